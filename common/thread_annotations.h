// Clang thread-safety annotations (no-ops under other compilers), as leveldb's
// port/thread_annotations.h: they document which mutex guards which member.
#ifndef FAHA_COMMON_THREAD_ANNOTATIONS_H_
#define FAHA_COMMON_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define FAHA_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define FAHA_THREAD_ANNOTATION(x)
#endif

#define GUARDED_BY(x) FAHA_THREAD_ANNOTATION(guarded_by(x))
#define REQUIRES(...) FAHA_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))

#endif  // FAHA_COMMON_THREAD_ANNOTATIONS_H_
