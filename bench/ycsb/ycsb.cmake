# faha-bench: the YCSB-compatible driver (bench/ycsb/, bench/faha_bench.cc) and
# its unit test. Included from the top-level CMakeLists.txt after
# faha_unit_test is defined.
add_library(faha_ycsb STATIC ${CMAKE_SOURCE_DIR}/bench/ycsb/generators.cc
            ${CMAKE_SOURCE_DIR}/bench/ycsb/workload.cc ${CMAKE_SOURCE_DIR}/bench/ycsb/db.cc)
target_include_directories(faha_ycsb PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(faha_ycsb PUBLIC faha faha_common PRIVATE faha_warnings)
add_executable(faha-bench ${CMAKE_SOURCE_DIR}/bench/faha_bench.cc)
target_link_libraries(faha-bench PRIVATE faha_ycsb faha_warnings)
faha_unit_test(ycsb_test ${CMAKE_SOURCE_DIR}/bench/ycsb/ycsb_test.cc)
target_link_libraries(ycsb_test PRIVATE faha_ycsb)
