// Runs the txmq CLI binary (the build passes its path in TXMQ_CLI) as a
// separate process and captures what it printed.

#ifndef TXMQ_TESTS_CLI_CLI_RUNNER_H_
#define TXMQ_TESTS_CLI_CLI_RUNNER_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace txmq::testing {

inline std::string CliBinary() {
  const char* path = getenv("TXMQ_CLI");
  return path != nullptr ? path : "tools/txmq";
}

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A CLI process: started with its stdout and stderr going to files in a
// temporary directory (so that neither can fill a pipe), stdin from
// `input`; `env` entries are added to this process's environment.
class CliProcess {
 public:
  CliProcess(const std::vector<std::string>& args, const std::string& input,
             const std::map<std::string, std::string>& env) {
    {
      std::ofstream in(io_.Sub("in"), std::ios::binary);
      in << input;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string in = io_.Sub("in"), out = io_.Sub("out"),
                      err = io_.Sub("err");
    posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> all = {CliBinary()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('='));
      if (!env.contains(name) && name != "TXMQ_NOW" && name != "TXMQ_DATA") {
        envs.push_back(entry);
      }
    }
    for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(),
                    envp.data()) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~CliProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  std::string OutSoFar() const { return ReadFile(io_.Sub("out")); }

  CliResult Wait() {
    CliResult r;
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, 0) == pid_) {
      r.exit_code =
          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    pid_ = -1;
    r.out = ReadFile(io_.Sub("out"));
    r.err = ReadFile(io_.Sub("err"));
    return r;
  }

 private:
  TempDir io_;
  pid_t pid_ = -1;
};

inline CliResult RunCli(const std::vector<std::string>& args,
                        const std::string& input = "",
                        const std::map<std::string, std::string>& env = {}) {
  return CliProcess(args, input, env).Wait();
}

}  // namespace txmq::testing

#endif  // TXMQ_TESTS_CLI_CLI_RUNNER_H_
