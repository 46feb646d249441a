// A vertical gradient, dark blue at the bottom to light at the top, so a flipped image is obvious.
in vec2 v_uv;
out vec4 frag_color;

uniform vec3 u_bottom;
uniform vec3 u_top;

void main() {
    frag_color = vec4(mix(u_bottom, u_top, v_uv.y), 1.0);
}
