// sana-sprint: the command line front end. Subcommands (commands.h) are thin layers over the library.
#include <CLI/CLI.hpp>

#include <c10/util/Exception.h>

#include <cstdio>

#include "commands.h"
#include "sana/error.h"
#include "sana/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"sana-sprint: SANA-Sprint one-step text-to-image in C++ (LibTorch)"};
  app.require_subcommand(1);
  app.fallthrough();  // -t/--threads also after the subcommand, as stable-diffusion.cpp users type it
  int threads = 0;
  app.add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);

  std::vector<sana::cli::Subcommand> commands = {sana::cli::add_inspect(app), sana::cli::add_generate(app),
                                                 sana::cli::add_eval(app), sana::cli::add_shapes(app),
                                                 sana::cli::add_serve(app), sana::cli::add_quantize(app)};
  for (auto& c : sana::cli::add_training(app)) commands.push_back(std::move(c));
  sana::cli::require_strict_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sana-sprint: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    sana::configure_runtime(threads);
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "sana-sprint: error: out of memory (try a smaller size, batch or --dtype bf16)\n");
    return 1;
  } catch (const c10::Error& e) {
    // LibTorch's messages carry a backtrace: the user gets the first line.
    std::fprintf(stderr, "sana-sprint: error: %s\n", sana::first_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sana-sprint: error: %s\n", sana::first_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
