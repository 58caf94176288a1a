/* vk_compute: fixed-count headless Vulkan compute workload (lavapipe on this VM).
 * Usage: vk_compute [--iters N (10)] [--bytes S (1048576, multiple of 256)]
 * Setup: instance, device, 2 buffers of S bytes (src: TRANSFER_SRC, dst: STORAGE|
 * TRANSFER_DST), vkAllocateMemory x2, vkMapMemory + memcpy upload into src.
 * Per iteration: vkBeginCommandBuffer, vkCmdCopyBuffer(src->dst, S bytes),
 * vkCmdPipelineBarrier, vkCmdBindPipeline, vkCmdBindDescriptorSets, vkCmdDispatch,
 * vkEndCommandBuffer, vkQueueSubmit, vkQueueWaitIdle.  Even iterations call the
 * loader's exported functions (libvulkan.so.1 trampolines); odd iterations call
 * pointers from vkGetDeviceProcAddr (straight into the ICD).
 * End: map dst and verify data = src*2+1, vkFreeMemory x2. */
#include <vulkan/vulkan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vk_compute_spv.h"

#define CHECK(x) do { VkResult r_ = (x); if (r_ != VK_SUCCESS) { \
    fprintf(stderr, "%s failed: %d (line %d)\n", #x, r_, __LINE__); exit(1); } } while (0)

#define FN(X) X(vkBeginCommandBuffer) X(vkCmdCopyBuffer) X(vkCmdPipelineBarrier) \
    X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) X(vkCmdDispatch) \
    X(vkEndCommandBuffer) X(vkQueueSubmit) X(vkQueueWaitIdle)
#define DECL_PTR(n) static PFN_##n p_##n;
FN(DECL_PTR)
/* indices into counters */
#define ENUM(n) I_##n,
enum { FN(ENUM) I_vkCreateInstance, I_vkCreateDevice, I_vkCreateBuffer,
       I_vkAllocateMemory, I_vkMapMemory, I_vkUnmapMemory, I_vkFreeMemory, I_N };
#define NAME(n) #n,
static const char *names[I_N] = { FN(NAME) "vkCreateInstance", "vkCreateDevice",
    "vkCreateBuffer", "vkAllocateMemory", "vkMapMemory", "vkUnmapMemory", "vkFreeMemory" };
static long cnt[I_N], viaptr[I_N], bytes[I_N];
/* call through the exported symbol or through the device-proc pointer */
#define CALL(use_ptr, n, ...) (cnt[I_##n]++, (use_ptr) ? (viaptr[I_##n]++, p_##n(__VA_ARGS__)) : n(__VA_ARGS__))

static int arg(int argc, char **argv, const char *name, int def)
{
    for (int i = 1; i + 1 < argc; i++) if (!strcmp(argv[i], name)) return atoi(argv[i + 1]);
    return def;
}

static uint32_t find_mem(VkPhysicalDevice pd, uint32_t bits, VkMemoryPropertyFlags want)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    fprintf(stderr, "no host-visible memory type\n"); exit(1);
}

int main(int argc, char **argv)
{
    int iters = arg(argc, argv, "--iters", 10);
    VkDeviceSize S = (VkDeviceSize)arg(argc, argv, "--bytes", 1 << 20);
    if (iters < 0 || S < 256 || S % 256) { fprintf(stderr, "bad --iters/--bytes\n"); return 2; }
    uint32_t nwords = (uint32_t)(S / 4), groups = (nwords + 63) / 64;

    VkApplicationInfo app = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "vk_compute", .apiVersion = VK_API_VERSION_1_0 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app };
    VkInstance inst;
    CHECK(vkCreateInstance(&ici, NULL, &inst)); cnt[I_vkCreateInstance]++;
    uint32_t npd = 8; VkPhysicalDevice pds[8];
    CHECK(vkEnumeratePhysicalDevices(inst, &npd, pds));
    if (!npd) { fprintf(stderr, "no Vulkan device\n"); return 1; }
    VkPhysicalDevice pd = pds[0];
    VkPhysicalDeviceProperties props; vkGetPhysicalDeviceProperties(pd, &props);
    uint32_t nq = 16, qf = UINT32_MAX; VkQueueFamilyProperties qfp[16];
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qfp);
    for (uint32_t i = 0; i < nq && qf == UINT32_MAX; i++) if (qfp[i].queueFlags & VK_QUEUE_COMPUTE_BIT) qf = i;
    if (qf == UINT32_MAX) { fprintf(stderr, "no compute queue\n"); return 1; }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = qf, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1, .pQueueCreateInfos = &qci };
    VkDevice dev;
    CHECK(vkCreateDevice(pd, &dci, NULL, &dev)); cnt[I_vkCreateDevice]++;
    VkQueue q; vkGetDeviceQueue(dev, qf, 0, &q);
#define LOAD(n) if (!(p_##n = (PFN_##n)vkGetDeviceProcAddr(dev, #n))) { fprintf(stderr, "no %s\n", #n); return 1; }
    FN(LOAD)

    /* buffers + memory */
    VkBuffer buf[2]; VkDeviceMemory mem[2]; void *map[2];
    VkBufferUsageFlags usage[2] = { VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
        VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT };
    for (int b = 0; b < 2; b++) {
        VkBufferCreateInfo bci = { .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = S,
            .usage = usage[b], .sharingMode = VK_SHARING_MODE_EXCLUSIVE };
        CHECK(vkCreateBuffer(dev, &bci, NULL, &buf[b])); cnt[I_vkCreateBuffer]++;
        VkMemoryRequirements mr; vkGetBufferMemoryRequirements(dev, buf[b], &mr);
        VkMemoryAllocateInfo mai = { .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = mr.size, .memoryTypeIndex = find_mem(pd, mr.memoryTypeBits,
            VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT) };
        CHECK(vkAllocateMemory(dev, &mai, NULL, &mem[b]));
        cnt[I_vkAllocateMemory]++; bytes[I_vkAllocateMemory] += mr.size;
        CHECK(vkBindBufferMemory(dev, buf[b], mem[b], 0));
    }
    CHECK(vkMapMemory(dev, mem[0], 0, S, 0, &map[0])); cnt[I_vkMapMemory]++; bytes[I_vkMapMemory] += S;
    uint32_t *host = malloc(S);
    for (uint32_t i = 0; i < nwords; i++) host[i] = i;
    memcpy(map[0], host, S);                               /* host -> mapped upload */
    long upload = S;
    free(host);
    vkUnmapMemory(dev, mem[0]); cnt[I_vkUnmapMemory]++;

    /* pipeline */
    VkDescriptorSetLayoutBinding dslb = { 0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL };
    VkDescriptorSetLayoutCreateInfo dslci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = 1, .pBindings = &dslb };
    VkDescriptorSetLayout dsl; CHECK(vkCreateDescriptorSetLayout(dev, &dslci, NULL, &dsl));
    VkPipelineLayoutCreateInfo plci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1, .pSetLayouts = &dsl };
    VkPipelineLayout pl; CHECK(vkCreatePipelineLayout(dev, &plci, NULL, &pl));
    VkShaderModuleCreateInfo smci = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = sizeof vk_compute_spv, .pCode = vk_compute_spv };
    VkShaderModule sm; CHECK(vkCreateShaderModule(dev, &smci, NULL, &sm));
    VkComputePipelineCreateInfo cpci = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                   .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = sm, .pName = "main" },
        .layout = pl };
    VkPipeline pipe; CHECK(vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpci, NULL, &pipe));
    VkDescriptorPoolSize dps = { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1 };
    VkDescriptorPoolCreateInfo dpci = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = 1, .poolSizeCount = 1, .pPoolSizes = &dps };
    VkDescriptorPool dp; CHECK(vkCreateDescriptorPool(dev, &dpci, NULL, &dp));
    VkDescriptorSetAllocateInfo dsai = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = dp, .descriptorSetCount = 1, .pSetLayouts = &dsl };
    VkDescriptorSet ds; CHECK(vkAllocateDescriptorSets(dev, &dsai, &ds));
    VkDescriptorBufferInfo dbi = { buf[1], 0, VK_WHOLE_SIZE };
    VkWriteDescriptorSet wds = { .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = ds,
        .descriptorCount = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &dbi };
    vkUpdateDescriptorSets(dev, 1, &wds, 0, NULL);
    VkCommandPoolCreateInfo cpoi = { .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, .queueFamilyIndex = qf };
    VkCommandPool cp; CHECK(vkCreateCommandPool(dev, &cpoi, NULL, &cp));
    VkCommandBufferAllocateInfo cbai = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = cp, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1 };
    VkCommandBuffer cb; CHECK(vkAllocateCommandBuffers(dev, &cbai, &cb));

    VkCommandBufferBeginInfo cbbi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT };
    VkBufferCopy region = { 0, 0, S };
    VkBufferMemoryBarrier bmb = { .sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
        .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED, .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .buffer = buf[1], .offset = 0, .size = VK_WHOLE_SIZE };
    VkSubmitInfo si = { .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb };
    for (int it = 0; it < iters; it++) {
        int P = it & 1;                    /* odd iterations: vkGetDeviceProcAddr pointers */
        CHECK(CALL(P, vkBeginCommandBuffer, cb, &cbbi));
        CALL(P, vkCmdCopyBuffer, cb, buf[0], buf[1], 1, &region); bytes[I_vkCmdCopyBuffer] += S;
        CALL(P, vkCmdPipelineBarrier, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
             0, 0, NULL, 1, &bmb, 0, NULL);
        CALL(P, vkCmdBindPipeline, cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
        CALL(P, vkCmdBindDescriptorSets, cb, VK_PIPELINE_BIND_POINT_COMPUTE, pl, 0, 1, &ds, 0, NULL);
        CALL(P, vkCmdDispatch, cb, groups, 1, 1);
        CHECK(CALL(P, vkEndCommandBuffer, cb));
        CHECK(CALL(P, vkQueueSubmit, q, 1, &si, VK_NULL_HANDLE));
        CHECK(CALL(P, vkQueueWaitIdle, q));
    }

    CHECK(vkMapMemory(dev, mem[1], 0, S, 0, &map[1])); cnt[I_vkMapMemory]++; bytes[I_vkMapMemory] += S;
    long bad = 0; const uint32_t *dst = map[1];
    for (uint32_t i = 0; i < nwords; i++) bad += dst[i] != (iters ? i * 2u + 1u : 0u);
    vkUnmapMemory(dev, mem[1]); cnt[I_vkUnmapMemory]++;

    vkDestroyCommandPool(dev, cp, NULL);
    vkDestroyDescriptorPool(dev, dp, NULL);
    vkDestroyPipeline(dev, pipe, NULL);
    vkDestroyShaderModule(dev, sm, NULL);
    vkDestroyPipelineLayout(dev, pl, NULL);
    vkDestroyDescriptorSetLayout(dev, dsl, NULL);
    for (int b = 0; b < 2; b++) {
        vkDestroyBuffer(dev, buf[b], NULL);
        vkFreeMemory(dev, mem[b], NULL); cnt[I_vkFreeMemory]++;
    }
    vkDestroyDevice(dev, NULL);
    vkDestroyInstance(inst, NULL);

    printf("{\"api\":\"vulkan\",\"iters\":%d,\"buffer_bytes\":%lu,\"dispatch_groups\":[%u,1,1],\"calls\":{",
           iters, (unsigned long)S, groups);
    for (int i = 0; i < I_N; i++) printf("%s\"%s\":%ld", i ? "," : "", names[i], cnt[i]);
    printf("},\"via_getdeviceprocaddr\":{");
    for (int i = 0, f = 1; i < I_N; i++) if (cnt[i] && i <= I_vkQueueWaitIdle) {
        printf("%s\"%s\":%ld", f ? "" : ",", names[i], viaptr[i]); f = 0; }
    printf("},\"bytes\":{\"vkAllocateMemory\":%ld,\"vkMapMemory\":%ld,\"host_upload_memcpy\":%ld,"
           "\"vkCmdCopyBuffer\":%ld},\"verify_mismatches\":%ld,\"device\":\"%s\",\"pid\":%d}\n",
           bytes[I_vkAllocateMemory], bytes[I_vkMapMemory], upload, bytes[I_vkCmdCopyBuffer],
           bad, props.deviceName, (int)getpid());
    return bad != 0;
}
