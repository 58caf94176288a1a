#version 450
// data[i] = data[i] * 2 + 1 over a storage buffer of uints.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Buf { uint data[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < data.length()) data[i] = data[i] * 2u + 1u;
}
