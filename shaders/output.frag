// The output pass: turns the scene's colour and depth into the delivered pixel format, and flips
// rows when asked, texel for texel (texelFetch, no filtering).
out vec4 frag_color;

uniform sampler2D u_color;
uniform sampler2D u_depth;
// 0: copy RGBA, 1: swizzle to BGRA, 2: Rec. 709 luma, 3: depth (OutputMode in src/gl/output.rs).
uniform int u_mode;
// Non-zero: row 0 of the output is the top row of the image.
uniform int u_flip;

void main() {
    ivec2 p = ivec2(gl_FragCoord.xy);
    if (u_flip != 0) {
        p.y = textureSize(u_color, 0).y - 1 - p.y;
    }
    vec4 color = texelFetch(u_color, p, 0);
    if (u_mode == 1) {
        frag_color = color.bgra;
    } else if (u_mode == 2) {
        frag_color = vec4(dot(color.rgb, vec3(0.2126, 0.7152, 0.0722)), 0.0, 0.0, 1.0);
    } else if (u_mode == 3) {
        frag_color = vec4(texelFetch(u_depth, p, 0).r, 0.0, 0.0, 1.0);
    } else {
        frag_color = color;
    }
}
