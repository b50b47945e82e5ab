# cmake -DSRC=<agent dir> -DDIR=<out dir> -DPATCH=<NAME.patch> -DPATCH_EXE=<patch>
#   -DSTAMP=<file> -P apply.cmake
# Makes DIR the sources of one mutant agent: a copy of SRC's src/, include/
# and main.c with PATCH applied (patch -p1 --fuzz=0; hunks may move, their
# context must match exactly). A patch that does not apply fails the build.
# Files whose patched text did not change keep their time stamps, so an edit
# recompiles only the files it touches.
cmake_minimum_required(VERSION 3.25)
foreach(v SRC DIR PATCH PATCH_EXE STAMP)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "apply.cmake: -D${v}=... missing")
  endif()
endforeach()

set(stage "${DIR}.stage")
file(REMOVE_RECURSE "${stage}")
file(MAKE_DIRECTORY "${stage}")
file(COPY "${SRC}/src" "${SRC}/include" "${SRC}/main.c" DESTINATION "${stage}")
execute_process(
  COMMAND "${PATCH_EXE}" -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch
    --reject-file=- -d "${stage}" -i "${PATCH}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  file(REMOVE_RECURSE "${stage}")
  message(FATAL_ERROR "${PATCH} does not apply to the agent's sources "
    "(see agent/tests/mutants/README.md to refresh it):\n${out}")
endif()

file(GLOB_RECURSE staged RELATIVE "${stage}" "${stage}/*")
file(GLOB_RECURSE old RELATIVE "${DIR}" "${DIR}/*")
foreach(f ${old})
  if(NOT f IN_LIST staged)
    file(REMOVE "${DIR}/${f}")
  endif()
endforeach()
foreach(f ${staged})
  get_filename_component(d "${DIR}/${f}" DIRECTORY)
  file(MAKE_DIRECTORY "${d}")
  file(COPY_FILE "${stage}/${f}" "${DIR}/${f}" ONLY_IF_DIFFERENT)
endforeach()
file(REMOVE_RECURSE "${stage}")
file(TOUCH "${STAMP}")
