// Runs tests/crash/child.cc as a real separate process (posix_spawn: fork
// and exec, so no LMDB environment is ever shared across fork).

#ifndef TXMQ_TESTS_CHILD_PROCESS_H_
#define TXMQ_TESTS_CHILD_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

namespace txmq::testing {

// The path of the helper binary; the build passes it in TXMQ_TEST_CHILD.
inline std::string ChildBinary() {
  const char* path = getenv("TXMQ_TEST_CHILD");
  return path != nullptr ? path : "tests/txmq_test_child";
}

class ChildProcess {
 public:
  // Starts the helper with `args` and waits until it prints "ready" (or
  // exits). ok() tells which.
  explicit ChildProcess(const std::vector<std::string>& args)
      : ChildProcess(ChildBinary(), args) {}
  // The same with another helper binary; its stderr appended to
  // `stderr_path` when one is given.
  ChildProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::string& stderr_path = "") {
    int out[2];
    if (pipe(out) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    if (!stderr_path.empty()) {
      posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                       O_WRONLY | O_CREAT | O_APPEND, 0644);
    }
    std::vector<std::string> all = {binary};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc =
        posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (rc != 0) {
      pid_ = -1;
      close(out[0]);
      return;
    }
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
    close(out[0]);
    ready_ = line == "ready";
  }
  ~ChildProcess() { Kill(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool ok() const { return pid_ > 0 && ready_; }
  pid_t pid() const { return pid_; }

  // SIGKILL and reap. Returns the wait status.
  int Kill() {
    if (pid_ <= 0) return 0;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace txmq::testing

#endif  // TXMQ_TESTS_CHILD_PROCESS_H_
