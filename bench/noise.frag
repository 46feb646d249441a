// A noisy Shadertoy-style scene for measuring compression (bench/network.sh, `bench
// --compress`): the plasma of plasma.frag under per-pixel grain that changes every frame, like an
// unconverged path tracer or film grain. No two neighbouring pixels and no two frames share their
// grain, so lossless codecs get little out of it: the worst case, next to plasma.frag's best.
uint hash(uvec3 v) {
    uint h = v.x * 1664525u + v.y * 1013904223u + v.z * 2654435769u;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h;
}

void mainImage(out vec4 fragColor, in vec2 fragCoord) {
    vec2 uv = fragCoord / iResolution.xy * 8.0;
    float t = iTime;
    float v = sin(uv.x + t) + sin((uv.y + t) * 0.5) + sin((uv.x + uv.y + t) * 0.5);
    v += sin(sqrt(uv.x * uv.x + uv.y * uv.y + 1.0) + t);
    vec3 color = 0.5 + 0.5 * cos(3.14159 * v + vec3(0.0, 2.0, 4.0));
    // Grain: one byte of the hash per channel, +-0.25 around the plasma.
    uint h = hash(uvec3(uvec2(fragCoord), uint(iFrame)));
    vec3 grain = vec3(uvec3(h, h >> 8, h >> 16) & 255u) / 255.0 - 0.5;
    fragColor = vec4(clamp(color + 0.5 * grain, 0.0, 1.0), 1.0);
}
