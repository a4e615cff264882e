// Early-return helpers for absl::Status, which Debian's Abseil (20220623)
// does not ship. Internal to the library.

#ifndef TXMQ_LIB_UTIL_STATUS_MACROS_H_
#define TXMQ_LIB_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// when it is not OK.
#define TXMQ_RETURN_IF_ERROR(expr)                                  \
  do {                                                              \
    if (::absl::Status txmq_status_ = (expr); !txmq_status_.ok()) { \
      return txmq_status_;                                          \
    }                                                               \
  } while (0)

#define TXMQ_CONCAT_INNER_(a, b) a##b
#define TXMQ_CONCAT_(a, b) TXMQ_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); returns its status from the
// enclosing function when it is not OK, else moves its value into `lhs`
// (a declaration such as `auto x` or an existing variable).
#define TXMQ_ASSIGN_OR_RETURN(lhs, rexpr)                                  \
  TXMQ_ASSIGN_OR_RETURN_IMPL_(TXMQ_CONCAT_(txmq_statusor_, __LINE__), lhs, \
                              rexpr)

#define TXMQ_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)  \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#endif  // TXMQ_LIB_UTIL_STATUS_MACROS_H_
