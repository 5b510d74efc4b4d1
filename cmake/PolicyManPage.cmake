# Writes sealgate-policy(5) (cmake -P): TEMPLATE with @VERSION@, and with
# @POLICY_KEYS@ replaced by what `SEALGATE policy keys --man` prints from
# the policy's key table. Arguments: SEALGATE, TEMPLATE, OUTPUT, VERSION.
execute_process(COMMAND ${SEALGATE} policy keys --man
                OUTPUT_VARIABLE POLICY_KEYS
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR POLICY_KEYS STREQUAL "")
  message(FATAL_ERROR "${SEALGATE} policy keys --man failed (${rc})")
endif()
string(REGEX REPLACE "\n$" "" POLICY_KEYS "${POLICY_KEYS}")
configure_file(${TEMPLATE} ${OUTPUT} @ONLY)
