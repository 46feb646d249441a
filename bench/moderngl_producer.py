"""The script a user writes instead of glstream (the head-to-head's opponent), written as the
issue describes it: moderngl on headless EGL, one full-screen Shadertoy-style pass, fbo.read_into
a reused bytearray, and sock.sendmsg([header, memoryview(buffer)]) with the 12-byte Blender
header, one frame after the other on one thread. It listens, serves one consumer FRAMES frames,
and exits.

    python moderngl_producer.py SHADER WIDTH HEIGHT FRAMES   # prints "listening on HOST:PORT"
"""
import socket
import struct
import sys

import moderngl

shader_path, width, height, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctx = moderngl.create_standalone_context(backend="egl")
prog = ctx.program(
    vertex_shader="""#version 330 core
        void main() {
            vec2 corner = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
            gl_Position = vec4(corner * 2.0 - 1.0, 1.0, 1.0);
        }""",
    fragment_shader="#version 330 core\nuniform vec3 iResolution;\nuniform float iTime;\n"
    "uniform int iFrame;\nout vec4 frag_color;\n" + open(shader_path).read() + """
        void main() {
            vec4 color = vec4(0.0, 0.0, 0.0, 1.0);
            mainImage(color, gl_FragCoord.xy);
            frag_color = vec4(color.rgb, 1.0);
        }""",
)
vao = ctx.vertex_array(prog, [])
fbo = ctx.simple_framebuffer((width, height), components=4)
fbo.use()
if "iResolution" in prog:
    prog["iResolution"].value = (width, height, 1.0)
buffer = bytearray(width * height * 4)
header = struct.pack("<QHH", len(buffer), height, width)

server = socket.create_server(("127.0.0.1", 0))
print("listening on %s:%d" % server.getsockname(), flush=True)
sock, _ = server.accept()
for frame in range(frames):
    if "iTime" in prog:
        prog["iTime"].value = frame / 60.0
    vao.render(moderngl.TRIANGLES, vertices=3)
    fbo.read_into(buffer, components=4)
    sock.sendmsg([header, memoryview(buffer)])
sock.close()
