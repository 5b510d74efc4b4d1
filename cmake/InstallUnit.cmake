# Installs contrib/sealgate.service (install(SCRIPT), at install time) with
# ExecStart naming the installed binary: CMAKE_INSTALL_PREFIX is then the
# prefix of this installation (cmake --install --prefix). SG_UNIT is the
# unit's source, SG_UNIT_OUT a scratch copy in the build directory.
file(READ "${SG_UNIT}" unit)
string(REGEX MATCHALL "\nExecStart=/usr/sbin/sealgate " found "${unit}")
list(LENGTH found n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "${SG_UNIT}: expected one ExecStart=/usr/sbin/sealgate")
endif()
string(REPLACE "\nExecStart=/usr/sbin/sealgate "
       "\nExecStart=${CMAKE_INSTALL_PREFIX}/sbin/sealgate " unit "${unit}")
file(WRITE "${SG_UNIT_OUT}" "${unit}")
file(INSTALL "${SG_UNIT_OUT}"
     DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
