# CMake toolchain for the device: Debian's aarch64-linux-gnu cross toolchain
# (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu) with the arm64 multiarch
# -dev packages installed beside the host ones (dpkg --add-architecture arm64).
# Libraries are found through pkg-config's aarch64 personality (pkgconf:arm64
# provides aarch64-linux-gnu-pkg-config), which reads only the arm64 .pc files.
# Used by images/build-agent-aarch64.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Multiarch: the target's libraries live in /usr/lib/aarch64-linux-gnu of the
# host itself, so the root is /; programs (cmake, dpkg-deb) are the host's.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(PKG_CONFIG_EXECUTABLE aarch64-linux-gnu-pkg-config CACHE FILEPATH "pkg-config for aarch64")
# Belt and braces: the personality already limits the search to these.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)

# Programs built here run under qemu-user (binfmt_misc or explicitly).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L /usr/aarch64-linux-gnu)
