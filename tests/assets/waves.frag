// A Shadertoy-style test scene: colour waves that move with iTime, and a bar whose width counts
// iFrame, so consecutive frames always differ.
void mainImage(out vec4 fragColor, in vec2 fragCoord) {
    vec2 uv = fragCoord / iResolution.xy;
    vec3 color = 0.5 + 0.5 * cos(iTime + uv.xyx * 6.0 + vec3(0.0, 2.0, 4.0));
    float ring = 0.5 + 0.5 * sin(length(uv - 0.5) * 40.0 - iTime * 4.0);
    color *= 0.6 + 0.4 * ring;
    // A white bar along the bottom edge, one pixel longer every frame.
    if (fragCoord.y < 4.0 && fragCoord.x < float(iFrame % int(iResolution.x))) {
        color = vec3(1.0);
    }
    fragColor = vec4(color, 1.0);
}
