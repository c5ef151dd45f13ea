# CTest script: installs the build into a scratch prefix, then configures, builds and runs
# tests/consumer against it with find_package(metagrad). Arguments: -DBUILD_DIR= -DSRC_DIR=
# -DGENERATOR=
set(prefix ${BUILD_DIR}/install-test/prefix)
set(cbuild ${BUILD_DIR}/install-test/consumer)
file(REMOVE_RECURSE ${BUILD_DIR}/install-test)
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}")
  endif()
  message(STATUS "${out}")
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${SRC_DIR}/tests/consumer -B ${cbuild} -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${cbuild})
run(${cbuild}/consumer)
