# CMake toolchain: aarch64 Linux (glibc) with Debian's cross compiler
# (`apt-get install g++-aarch64-linux-gnu`). Used by build_linux_aarch64.sh to build the runner
# against the aarch64 executorch wheel, for running under qemu-user (an emulated arm64 phone).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# The wheel's CMake package lives outside the sysroot, so packages are searched everywhere.
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
