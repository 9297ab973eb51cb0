// Clang thread-safety annotations (no-ops under other compilers), as leveldb's
// port/thread_annotations.h and abseil's: they say which mutex guards which
// member and which functions need it held, and clang's -Wthread-safety (on in
// every clang build, an error under FAHA_WERROR) checks them. They only mean
// something on capability types: use faha::Mutex and faha::SharedMutex
// (common/mutex.h), not Mutex.
#ifndef FAHA_COMMON_THREAD_ANNOTATIONS_H_
#define FAHA_COMMON_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define FAHA_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define FAHA_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) FAHA_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY FAHA_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) FAHA_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) FAHA_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) FAHA_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) FAHA_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) FAHA_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) FAHA_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) FAHA_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) FAHA_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) FAHA_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) FAHA_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) FAHA_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) FAHA_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) FAHA_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS FAHA_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // FAHA_COMMON_THREAD_ANNOTATIONS_H_
