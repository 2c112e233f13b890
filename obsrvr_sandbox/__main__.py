from obsrvr_sandbox.cli import main

raise SystemExit(main())
