// glTF materials, simply: base colour (texture × factor) lit by one directional light plus
// ambient, plus the emissive factor. Textures are sRGB and the factors linear, as glTF says, so
// the texel is linearised, lit, and encoded back to sRGB for the RGBA8 target.
in vec3 v_normal;
in vec2 v_uv;
out vec4 frag_color;

uniform sampler2D u_base_color_texture;
uniform vec4 u_base_color_factor;
uniform vec3 u_emissive;
uniform vec3 u_light_direction;

void main() {
    vec3 texel = texture(u_base_color_texture, v_uv).rgb;
    vec3 albedo = pow(texel, vec3(2.2)) * u_base_color_factor.rgb;
    // Materials may be double-sided and meshes mirrored by a negative scale, so light whichever
    // side faces the camera.
    vec3 normal = normalize(v_normal);
    if (!gl_FrontFacing) {
        normal = -normal;
    }
    float diffuse = max(dot(normal, -u_light_direction), 0.0);
    vec3 color = albedo * (0.15 + 0.85 * diffuse) + u_emissive;
    frag_color = vec4(pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
