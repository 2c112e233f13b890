"""Builds the optional C extension (obsrvr_ray/xdr/_fastxdr.c). Without a compiler the
install still succeeds and the pure-Python decoder of the same table serves."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler or headers: fall back to pure Python
            print(f"warning: the compiled XDR decoder was not built ({exc}); using the pure-Python form")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"warning: could not build {ext.name} ({exc}); using the pure-Python form")


setup(
    ext_modules=[Extension("obsrvr_ray.xdr._fastxdr",
                           ["obsrvr_ray/xdr/_fastxdr.c", "obsrvr_ray/xdr/_transfers.c", "obsrvr_ray/xdr/_derive.c"],
                           depends=["obsrvr_ray/xdr/_fastxdr.h", "obsrvr_ray/xdr/_transfers.h"],
                           extra_compile_args=["-O2", "-fvisibility=hidden"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
