// glTF meshes: positions to clip space through the node's world matrix, normals through its
// inverse transpose (so non-uniform scale keeps them perpendicular), UVs straight through.
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec3 a_normal;
layout(location = 2) in vec2 a_uv;

uniform mat4 u_model;
uniform mat4 u_normal_matrix;
uniform mat4 u_view_projection;

out vec3 v_normal;
out vec2 v_uv;

void main() {
    v_normal = mat3(u_normal_matrix) * a_normal;
    v_uv = a_uv;
    gl_Position = u_view_projection * u_model * vec4(a_position, 1.0);
}
