// The `pattern` scene: the frame index as black and white cells under colour bars. The layout is
// src/scene/pattern_code.rs's, whose `decode_pattern` reads it back; change them together.
out vec4 frag_color;

uniform uint u_frame;
uniform int u_width_px;
uniform int u_grid_height_px;

const int COLUMNS = 8;
const int ROWS = 8;

const vec3 BARS[8] = vec3[8](
    vec3(1.0, 1.0, 1.0), vec3(1.0, 1.0, 0.0), vec3(0.0, 1.0, 1.0), vec3(0.0, 1.0, 0.0),
    vec3(1.0, 0.0, 1.0), vec3(1.0, 0.0, 0.0), vec3(0.0, 0.0, 1.0), vec3(0.0, 0.0, 0.0));

void main() {
    // gl_FragCoord is at pixel centres (x + 0.5), so truncation gives the integer pixel, and the
    // integer divisions below are exactly the decoder's.
    ivec2 px = ivec2(gl_FragCoord.xy);
    int column = px.x * COLUMNS / u_width_px;
    if (px.y >= u_grid_height_px) {
        frag_color = vec4(BARS[column], 1.0);
        return;
    }
    int row_from_top = ROWS - 1 - px.y * ROWS / u_grid_height_px;
    int cell = row_from_top * COLUMNS + column;
    uint bit = (u_frame >> uint(31 - cell % 32)) & 1u;
    if (cell >= 32) {
        bit = 1u - bit;
    }
    frag_color = vec4(vec3(float(bit)), 1.0);
}
