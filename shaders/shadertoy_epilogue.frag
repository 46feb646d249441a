
// Calls the user's mainImage the way Shadertoy does; the stream is opaque, so alpha is forced to 1.
void main() {
    vec4 color = vec4(0.0, 0.0, 0.0, 1.0);
    mainImage(color, gl_FragCoord.xy);
    frag_color = vec4(color.rgb, 1.0);
}
