// Lambert lighting from one directional light plus ambient, modulating the texture.
in vec3 v_normal;
in vec2 v_uv;
out vec4 frag_color;

uniform sampler2D u_texture;
uniform vec3 u_light_direction;

void main() {
    vec3 albedo = texture(u_texture, v_uv).rgb;
    float diffuse = max(dot(normalize(v_normal), -normalize(u_light_direction)), 0.0);
    frag_color = vec4(albedo * (0.25 + 0.75 * diffuse), 1.0);
}
