# Writes robots_embedded.cpp: the robot MJCF files as string constants, so the
# modiff binary runs from anywhere without looking for assets/.
file(GLOB robot_files "${ROBOTS_DIR}/*.xml")
set(body "// Generated from assets/robots by envs/embed_robots.cmake. Do not edit.\n#include <map>\n#include <string>\nnamespace modiff::envs {\nconst std::map<std::string, std::string>& embedded_robot_files() {\n  static const std::map<std::string, std::string> files = {\n")
foreach(f ${robot_files})
  get_filename_component(name "${f}" NAME)
  file(READ "${f}" content)
  string(APPEND body "    {\"${name}\", R\"modiff_xml(${content})modiff_xml\"},\n")
endforeach()
string(APPEND body "  };\n  return files;\n}\n}  // namespace modiff::envs\n")
file(WRITE "${OUTPUT}.new" "${body}")
file(COPY_FILE "${OUTPUT}.new" "${OUTPUT}" ONLY_IF_DIFFERENT)
