// A Shadertoy-style plasma for the head-to-head benchmark: a few sines per pixel, animated by
// iTime, the same file for glstream (--scene) and for the moderngl script.
void mainImage(out vec4 fragColor, in vec2 fragCoord) {
    vec2 uv = fragCoord / iResolution.xy * 8.0;
    float t = iTime;
    float v = sin(uv.x + t) + sin((uv.y + t) * 0.5) + sin((uv.x + uv.y + t) * 0.5);
    v += sin(sqrt(uv.x * uv.x + uv.y * uv.y + 1.0) + t);
    vec3 color = 0.5 + 0.5 * cos(3.14159 * v + vec3(0.0, 2.0, 4.0));
    fragColor = vec4(color, 1.0);
}
