#pragma once
// The command line's spelling of the generation parameters (sana/frontend/generation_params.h): registers one flag
// per field, remembers which the user typed (the rest may come from the model's generation_defaults.json), and
// turns a ParamError's field into the flag the user knows.
#include <CLI/CLI.hpp>

#include <string>
#include <utility>
#include <vector>

#include "sana/frontend/generation_params.h"

namespace sana::cli {

class GenerationFlags {
 public:
  // All fields get a flag, except those in `exclude` (e.g. eval has no prompt).
  GenerationFlags(CLI::App* app, GenerationParams& params, const FieldSet& exclude = {});

  // Fields whose flag was on the command line (after parsing).
  FieldSet given() const;
  // The flag of a field ("-s/--seed"), or the field itself if it has none.
  std::string flag(const std::string& field) const;
  CLI::Option* option(const std::string& field) const;
  // The same error, spelled with the flag instead of the field.
  Error rephrase(const ParamError& e) const;

 private:
  std::vector<std::pair<std::string, CLI::Option*>> options_;
};

// The model folder (the shipped default when none is given), its generation_defaults.json under the user's flags,
// then every check that needs no weights; errors spelled with the flags.
void prepare_generation(GenerationParams& params, const GenerationFlags& flags);

}  // namespace sana::cli
