// Declarations a Shadertoy-style scene expects, before the user's file (see src/scene/shader.rs).
uniform vec3 iResolution;
uniform float iTime;
uniform float iTimeDelta;
uniform int iFrame;
uniform vec4 iMouse;
out vec4 frag_color;
