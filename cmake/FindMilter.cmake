# Finds libmilter (Debian: libmilter-dev), which ships no pkg-config file.
# Defines Milter_FOUND and the imported target Milter::Milter.
find_path(Milter_INCLUDE_DIR NAMES libmilter/mfapi.h)
find_library(Milter_LIBRARY NAMES milter)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Milter
  REQUIRED_VARS Milter_LIBRARY Milter_INCLUDE_DIR)

if(Milter_FOUND AND NOT TARGET Milter::Milter)
  add_library(Milter::Milter UNKNOWN IMPORTED)
  set_target_properties(Milter::Milter PROPERTIES
    IMPORTED_LOCATION "${Milter_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Milter_INCLUDE_DIR}")
endif()
mark_as_advanced(Milter_INCLUDE_DIR Milter_LIBRARY)
