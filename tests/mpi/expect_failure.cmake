# Runs an MPI program that must fail (cmake -P, for ctest): passes when mpirun exits non-zero
# before the timeout, its output matches EXPECT and does not match FORBID. WILL_FAIL alone
# would also pass a program that failed for an unrelated reason.
# Variables: MPIEXEC, EXE, ARGS (;-list), NP, EXPECT, FORBID, TIMEOUT (seconds).
execute_process(
  COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np ${NP} ${EXE} ${ARGS}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT ${TIMEOUT})
message("${out}")
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "mpirun did not end by itself: ${rc}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "mpirun exited 0, but a rank failed and the job should have failed")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "output does not contain '${EXPECT}'")
endif()
if(FORBID AND out MATCHES "${FORBID}")
  message(FATAL_ERROR "output contains '${FORBID}'")
endif()
message("mpirun exited ${rc}, as expected")
