# Writes OUTPUT, a C++ source defining `const std::string& NAME()` (in namespace NAMESPACE) that returns the bytes
# of INPUT. Run as: cmake -DINPUT=... -DOUTPUT=... -DNAME=... -DNAMESPACE=... -P embed_text.cmake
file(READ "${INPUT}" content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," chars "${content}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\n#include <string>\nnamespace ${NAMESPACE} {\n"
"const std::string& ${NAME}() {\n  static const char bytes[] = {${chars}};\n"
"  static const std::string text(bytes, sizeof(bytes));\n  return text;\n}\n}  // namespace ${NAMESPACE}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
