// How much a flush costs on this disk when it grows the file, against when
// it overwrites blocks the file already has. The reason for
// Env::PrefillAhead (docs/performance.md).
//
//   build/bench/fsync_probe [DIR]     (default /tmp)

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

double MicrosPerFlush(int fd, bool prewrite, int pages, int rounds) {
  std::string page(4096, '\1');
  if (prewrite) {
    for (int i = 0; i < pages * rounds; ++i) {
      if (pwrite(fd, page.data(), page.size(), off_t{i} * 4096) < 0) return -1;
    }
    fsync(fd);
  }
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r) {
    for (int p = 0; p < pages; ++p) {
      if (pwrite(fd, page.data(), page.size(), off_t{r * pages + p} * 4096) <
          0) {
        return -1;
      }
    }
    fdatasync(fd);
  }
  const std::chrono::duration<double, std::micro> took =
      std::chrono::steady_clock::now() - start;
  return took.count() / rounds;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path =
      std::string(argc > 1 ? argv[1] : "/tmp") + "/txmq-fsync-probe.dat";
  for (bool prewrite : {false, true}) {
    unlink(path.c_str());
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 1;
    std::printf("%-26s 6 pages + fdatasync: %6.1f us\n",
                prewrite ? "overwriting written blocks" : "growing the file",
                MicrosPerFlush(fd, prewrite, 6, 400));
    close(fd);
  }
  unlink(path.c_str());
  return 0;
}
