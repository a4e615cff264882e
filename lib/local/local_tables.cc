#include "local/local_tables.h"

#include "absl/strings/str_format.h"
#include "topic/names.h"

namespace txmq::internal {

absl::StatusOr<LocalTable> LocalTables::Open(std::string_view name) {
  if (absl::Status s = ValidateName(name, NameKind::kTopic); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "table name: %s",
        std::string_view(s.message().data(), s.message().size())));
  }
  absl::MutexLock open_lock(&open_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (auto it = by_name_.find(std::string(name)); it != by_name_.end()) {
      return LocalTable(it->second);
    }
    if (by_name_.size() >= max_) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cannot open table '%s': %d tables are open, the most "
          "Options::max_tables allows",
          std::string(name), max_));
    }
  }
  MDB_dbi dbi = 0;
  const std::string lmdb_name = absl::StrFormat("t.%s", std::string(name));
  absl::Status s = RunWrite(
      *writer_,
      [&](WriteContext& ctx) -> absl::Status {
        if (int rc =
                mdb_dbi_open(ctx.txn(), lmdb_name.c_str(), MDB_CREATE, &dbi);
            rc != MDB_SUCCESS) {
          return ctx.Fail(
              rc, absl::StrFormat("cannot open table '%s'", std::string(name)));
        }
        return absl::OkStatus();
      },
      /*exclusive=*/true);
  if (!s.ok()) return s;
  absl::MutexLock lock(&mu_);
  by_name_[std::string(name)] = dbi;
  handles_.insert(dbi);
  return LocalTable(dbi);
}

absl::StatusOr<MDB_dbi> LocalTables::Handle(LocalTable table) const {
  absl::MutexLock lock(&mu_);
  if (!handles_.contains(table.handle_)) {
    return absl::InvalidArgumentError(
        "not a table of this broker: use what its OpenTable returned");
  }
  return table.handle_;
}

}  // namespace txmq::internal
