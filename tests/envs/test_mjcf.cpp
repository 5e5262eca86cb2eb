// The MJCF reader: what it accepts, what it refuses, and the multibodies the
// importer builds from the shipped robots.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "modiff/common/error.h"
#include "modiff/envs/mjcf.h"

using namespace modiff::envs;

namespace {

const char* kSmallModel = R"(<mujoco model="m">
  <compiler angle="degree" coordinate="local" inertiafromgeom="true"/>
  <default>
    <joint limited="true" damping="1"/>
    <geom contype="1" conaffinity="0" friction="0.7 0.1 0.1"/>
  </default>
  <worldbody>
    <body name="torso" pos="0 0 1">
      <geom name="g" type="capsule" size="0.05" fromto="0 0 0.2 0 0 -0.2"/>
      <body name="leg" pos="0 0 -0.2">
        <joint name="knee" type="hinge" axis="0 -1 0" range="-90 0"/>
        <geom name="shin" type="capsule" size="0.04 0.2" pos="0 0 -0.2" axisangle="0 1 0 10"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor joint="knee" gear="100"/></actuator>
</mujoco>)";

void expect_error(const std::string& xml, const std::string& fragment) {
  try {
    parse_mjcf(xml, "bad.xml");
    FAIL("no error for: " << xml);
  } catch (const modiff::Error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("MJCF: defaults apply and values stay as written", "[mjcf]") {
  MjcfModel m = parse_mjcf(kSmallModel, "small.xml");
  REQUIRE(m.bodies.size() == 1);
  const MjcfBody& torso = m.bodies[0];
  CHECK(torso.name == "torso");
  CHECK(torso.pos[2] == 1.0);
  const MjcfJoint& knee = torso.children.at(0).joints.at(0);
  CHECK(knee.limited);  // from <default>
  CHECK(knee.damping == 1.0);
  CHECK(knee.range_lo == -90.0);  // degrees, as written
  CHECK(knee.axis[1] == -1.0);
  const MjcfGeom& shin = torso.children[0].geoms.at(0);
  CHECK(shin.friction[0] == Approx(0.7));
  CHECK(shin.conaffinity == 0);
  REQUIRE(shin.axisangle);
  CHECK((*shin.axisangle)[3] == 10.0);
  CHECK(m.motors.at(0).gear == 100.0);
  CHECK(m.angles_in_degrees);
}

TEST_CASE("MJCF: MuJoCo-only attributes are recorded, not silently dropped", "[mjcf]") {
  std::string xml = kSmallModel;
  xml.replace(xml.find("friction=\"0.7 0.1 0.1\""), 22, "friction=\"0.7 0.1 0.1\" solref=\"0.02 1\"");
  MjcfModel m = parse_mjcf(xml, "x.xml");
  REQUIRE(m.ignored_attributes.size() == 1);
  CHECK(m.ignored_attributes[0].find("geom@solref") != std::string::npos);
}

TEST_CASE("MJCF: unsupported elements and attributes are errors naming them and their line", "[mjcf]") {
  std::string xml = kSmallModel;
  std::string unknown_attr = xml;
  unknown_attr.replace(unknown_attr.find("gear=\"100\""), 10, "gear=\"100\" forcerange=\"-1 1\"");
  expect_error(unknown_attr, "unsupported attribute 'forcerange' on <motor>");
  std::string unknown_elem = xml;
  unknown_elem.replace(unknown_elem.find("<actuator>"), 10, "<tendon/><actuator>");
  expect_error(unknown_elem, "bad.xml:16: unsupported element: <tendon>");
  expect_error("<mujoco><worldbody><body><geom type=\"mesh\" size=\"1\"/></body></worldbody></mujoco>",
               "unsupported geom type 'mesh'");
  expect_error("<mujoco><worldbody><body><joint name=\"j\" type=\"ball\"/></body></worldbody></mujoco>",
               "unsupported joint type 'ball'");
  expect_error("<mujoco><worldbody><body><geom type=\"sphere\" size=\"abc\"/></body></worldbody></mujoco>",
               "'abc' is not a finite number");
  expect_error("<mujoco><worldbody><body><geom type=\"sphere\" size=\"-1\"/></body></worldbody></mujoco>",
               "sizes must be positive");
  expect_error("<mujoco><worldbody><body><joint name=\"j\" limited=\"true\"/></body></worldbody></mujoco>",
               "limited joint without range");
  expect_error("<mujoco><worldbody>", "malformed XML");
  expect_error("<robot/>", "root element must be <mujoco>");
  expect_error("<mujoco><worldbody/></mujoco>", "holds no body");
}

TEST_CASE("MJCF: a missing robot file is a clear error", "[mjcf]") {
  CHECK_THROWS_WITH(load_mjcf_file("/nonexistent/robot.xml"), Catch::Contains("cannot open robot file"));
}

TEST_CASE("MJCF: the shipped robot files parse", "[mjcf]") {
  for (const char* name : {"hopper.xml", "walker2d.xml", "half_cheetah.xml", "ant.xml"}) {
    INFO(name);
    MjcfModel m = load_mjcf_file(std::string(MODIFF_ASSETS_DIR) + "/robots/" + name);
    CHECK(m.bodies.size() == 1);
    CHECK(m.bodies[0].name == "torso");
  }
}
