#include "cli/format.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace txmq::cli {

Table::Table(std::vector<std::string> header)
    : header_(std::move(header)), right_(header_.size(), false) {}

Table& Table::RightAlign(std::vector<size_t> columns) {
  for (size_t c : columns) right_[c] = true;
  return *this;
}

void Table::Add(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

namespace {

// Display width: UTF-8 code points (bodies and keys may hold any text).
size_t Width(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

void Table::Print(std::FILE* out) const {
  if (rows_.empty()) return;
  std::vector<size_t> width(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) width[c] = Width(header_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) {
      width[c] = std::max(width[c], Width(row[c]));
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < cells.size(); ++c) {
      const size_t pad = width[c] - Width(cells[c]);
      const bool last = c + 1 == cells.size();
      if (c > 0) text += "  ";
      if (right_[c]) text.append(pad, ' ');
      text += cells[c];
      if (!right_[c] && !last) text.append(pad, ' ');
    }
    std::fprintf(out, "%s\n", text.c_str());
  };
  line(header_);
  for (const auto& row : rows_) line(row);
}

void Fields::Add(std::string key, std::string value) {
  fields_.emplace_back(std::move(key), std::move(value));
}

void Fields::Print(std::FILE* out) const {
  size_t width = 0;
  for (const auto& [k, v] : fields_) width = std::max(width, k.size());
  for (const auto& [k, v] : fields_) {
    std::fprintf(out, "%-*s  %s\n", static_cast<int>(width), k.c_str(),
                 v.c_str());
  }
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string IsoTime(absl::Time t) {
  if (t == absl::InfiniteFuture()) return "never";
  if (t == absl::InfinitePast()) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::string DurationText(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return "forever";
  return absl::FormatDuration(d);
}

std::string Age(absl::Duration d) {
  if (d < absl::ZeroDuration()) return "in " + Age(-d);
  const int64_t s = absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m", s % 60, "s");
  if (s < 86400) return absl::StrCat(s / 3600, "h", s % 3600 / 60, "m");
  return absl::StrCat(s / 86400, "d", s % 86400 / 3600, "h");
}

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
        (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

namespace {

bool HasControl(std::string_view s, bool allow_newlines) {
  for (unsigned char c : s) {
    if ((c < 0x20 && !(allow_newlines && (c == '\n' || c == '\t'))) ||
        c == 0x7f) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string BodyText(std::string_view body) {
  if (IsUtf8(body) && !HasControl(body, /*allow_newlines=*/true)) {
    return std::string(body);
  }
  return absl::CHexEscape(absl::string_view(body.data(), body.size()));
}

std::string BodyCell(std::string_view body, size_t max) {
  std::string text;
  if (IsUtf8(body) && !HasControl(body, /*allow_newlines=*/false)) {
    text.assign(body);
  } else if (IsUtf8(body)) {
    for (char c : body) {
      if (c == '\n') {
        text += "\\n";
      } else if (c == '\t') {
        text += "\\t";
      } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        text += absl::StrFormat("\\x%02x", static_cast<unsigned char>(c));
      } else {
        text += c;
      }
    }
  } else {
    text = absl::CHexEscape(absl::string_view(body.data(), body.size()));
  }
  if (Width(text) <= max) return text;
  // Cut at a code point boundary.
  size_t chars = 0, at = 0;
  while (at < text.size() && chars < max - 3) {
    ++at;
    while (at < text.size() &&
           (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) {
      ++at;
    }
    ++chars;
  }
  return text.substr(0, at) + "...";
}

Progress::Progress(std::string label)
    : label_(std::move(label)),
      enabled_(::isatty(STDOUT_FILENO) == 1 && ::isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() { Done(); }

void Progress::Done() {
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

void Progress::Update(uint64_t done, uint64_t total) {
  if (!enabled_) return;
  const absl::Time now = absl::Now();
  if (now - last_ < absl::Milliseconds(100) && done < total) return;
  last_ = now;
  constexpr int kWidth = 30;
  const double f =
      total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const int fill = static_cast<int>(f * kWidth);
  std::fprintf(stderr, "\r%s [%s%s] %3d%% %llu/%llu", label_.c_str(),
               std::string(fill, '#').c_str(),
               std::string(kWidth - fill, ' ').c_str(),
               static_cast<int>(f * 100), static_cast<unsigned long long>(done),
               static_cast<unsigned long long>(total));
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace txmq::cli
