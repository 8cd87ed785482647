"""Builds libmoe's shared library with CMake (from the repository this package sits in)
and ships it inside the package, unless LIBMOE_LIBRARY names one to use at run time."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        if os.environ.get("LIBMOE_LIBRARY"):
            return  # found at run time
        build = os.path.join(os.path.abspath(self.build_lib), "..", "libmoe-cmake")
        cuda = os.environ.get("LIBMOE_CUDA", "AUTO")
        subprocess.check_call(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                               "-DMOE_BUILD_TESTS=OFF", "-DMOE_BUILD_BENCH=OFF",
                               f"-DMOE_CUDA={cuda}"])
        subprocess.check_call(["cmake", "--build", build, "--target", "moe", "-j"])
        dest = os.path.join(self.build_lib, "libmoe", "libmoe.so")
        shutil.copyfile(os.path.realpath(os.path.join(build, "libmoe.so")), dest)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # the wheel carries a native library: platform-specific
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
