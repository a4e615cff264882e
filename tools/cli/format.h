// Human output of the CLI: aligned tables, sizes, times, bodies; and the
// progress bar of long operations.

#ifndef TXMQ_TOOLS_CLI_FORMAT_H_
#define TXMQ_TOOLS_CLI_FORMAT_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace txmq::cli {

// A table printed with aligned columns; numeric columns right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  // Columns that are right-aligned (numbers).
  Table& RightAlign(std::vector<size_t> columns);
  void Add(std::vector<std::string> row);
  bool empty() const { return rows_.empty(); }
  // Prints the header and rows (or nothing when there are no rows).
  void Print(std::FILE* out) const;

 private:
  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// "key   value" lines with the values aligned.
class Fields {
 public:
  void Add(std::string key, std::string value);
  void Print(std::FILE* out) const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// 512 B, 1.5 KiB, 3.0 MiB, ...
std::string HumanBytes(uint64_t bytes);
// ISO-8601 in UTC with milliseconds: 2026-11-26T09:30:00.000Z.
std::string IsoTime(absl::Time t);
// 72h, 30s, 1h30m, 500ms, forever.
std::string DurationText(absl::Duration d);
// A short age: 3s, 5m10s, 2h3m, 4d2h (negative ages print as "in ...").
std::string Age(absl::Duration d);

bool IsUtf8(std::string_view bytes);
// A body as text: itself when it is valid UTF-8 with no control characters
// but newline and tab, C-escaped otherwise ("\x00\xff").
std::string BodyText(std::string_view body);
// A body on one table line: control characters escaped, at most `max`
// characters (then "...").
std::string BodyCell(std::string_view body, size_t max = 40);

// A progress bar on stderr, drawn only when stdout is a terminal (and
// quiet otherwise, so that scripts see nothing), redrawn at most 10 times a
// second, erased when done.
class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void Update(uint64_t done, uint64_t total);
  // Erases the bar (before printing results); the destructor does too.
  void Done();

 private:
  const std::string label_;
  const bool enabled_;
  bool drawn_ = false;
  absl::Time last_ = absl::InfinitePast();
};

}  // namespace txmq::cli

#endif  // TXMQ_TOOLS_CLI_FORMAT_H_
