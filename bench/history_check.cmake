# The failover-drill history checker (bench/history_check.h) and its unit test.
# Included from the top-level CMakeLists.txt after faha_unit_test is defined.
add_library(faha_history_check STATIC ${CMAKE_SOURCE_DIR}/bench/history_check.cc)
target_include_directories(faha_history_check PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(faha_history_check PRIVATE faha_warnings)
faha_unit_test(history_check_test ${CMAKE_SOURCE_DIR}/bench/history_check_test.cc)
target_link_libraries(history_check_test PRIVATE faha_history_check)

# faha-drill: the failover drill (starts etcd and three faha-server nodes).
add_executable(faha-drill ${CMAKE_SOURCE_DIR}/bench/drill.cc ${CMAKE_SOURCE_DIR}/bench/netns.cc)
target_link_libraries(faha-drill PRIVATE faha faha_common faha_history_check faha_coord_testing
                      gflags faha_warnings)
