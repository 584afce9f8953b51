#pragma once
// The subcommands of `sana-sprint`. Each add_* registers its flags on the app and returns what to run when the user
// chose it; the work itself is in the library.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace sana::cli {

struct Subcommand {
  CLI::App* app;
  std::function<int()> run;
};

Subcommand add_inspect(CLI::App& app);
Subcommand add_generate(CLI::App& app);
Subcommand add_eval(CLI::App& app);
Subcommand add_shapes(CLI::App& app);
Subcommand add_serve(CLI::App& app);
Subcommand add_quantize(CLI::App& app);
std::vector<Subcommand> add_training(CLI::App& app);  // train-vae, text-encoder, cache, train, distill

// Adds to every integer and number option of `app` and its subcommands a check that the whole value parses in base
// 10 and within range: an empty value, "010", "1e3" for an integer or 2^63 are errors naming the flag.
void require_strict_numbers(CLI::App& app);

// "[sana-sprint] msg" on stderr.
inline void note(const std::string& msg) { std::fprintf(stderr, "[sana-sprint] %s\n", msg.c_str()); }
inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// Seconds with one decimal.
std::string seconds(double s);

}  // namespace sana::cli
