from obsrvr_ray.cli import main

raise SystemExit(main())
