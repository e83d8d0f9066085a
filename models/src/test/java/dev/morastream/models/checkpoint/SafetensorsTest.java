package dev.morastream.models.checkpoint;

import dev.morastream.models.llama.TestWeights;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    // ------------------------------------------------------------------ helpers

    private static float[] gaussian(int n, long seed, float scale) {
        Random r = new Random(seed);
        float[] d = new float[n];
        for (int i = 0; i < n; i++) {
            d[i] = scale * (float) r.nextGaussian();
        }
        return d;
    }

    private static void assertBitsEqual(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length, what + ": length");
        for (int i = 0; i < want.length; i++) {
            if (Float.floatToRawIntBits(want[i]) != Float.floatToRawIntBits(got[i])) {
                fail(what + "[" + i + "]: want " + want[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(want[i]))
                        + ") got " + got[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(got[i])) + ")");
            }
        }
    }

    private static void assertTensorsEqual(List<Tensor> want, List<Tensor> got) {
        assertEquals(want.stream().map(Tensor::name).collect(Collectors.toList()),
                got.stream().map(Tensor::name).collect(Collectors.toList()), "tensor names and order");
        for (int i = 0; i < want.size(); i++) {
            assertArrayEquals(want.get(i).shape(), got.get(i).shape(), want.get(i).name() + ": shape");
            assertBitsEqual(want.get(i).data(), got.get(i).data(), want.get(i).name());
        }
    }

    /** A safetensors file written by hand: 8-byte LE header length, header text, data. */
    private static Path raw(Path file, String header, byte[] data) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data);
        Files.write(file, b.array());
        return file;
    }

    private static byte[] f32Bytes(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(v);
        return b.array();
    }

    /** The data section of a safetensors file (after the header). */
    private static byte[] dataSection(Path file) throws IOException {
        byte[] all = Files.readAllBytes(file);
        long headerLen = ByteBuffer.wrap(all, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        return Arrays.copyOfRange(all, (int) (8 + headerLen), all.length);
    }

    private static void truncate(Path file, long size) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.truncate(size);
        }
    }

    /** Asserts a CheckpointException naming {@code file} and {@code field}, message with the fragments. */
    private static CheckpointException assertCorrupt(Path file, String field, Executable action, String... fragments) {
        CheckpointException e = assertThrows(CheckpointException.class, action, "expected CheckpointException for " + field);
        assertEquals(file.toAbsolutePath().normalize(), e.file().toAbsolutePath().normalize(), "file of: " + e.getMessage());
        assertEquals(field, e.field(), "field of: " + e.getMessage());
        assertTrue(e.getMessage().contains(file.toString()), "message names the file: " + e.getMessage());
        assertTrue(e.getMessage().contains(field), "message names the field: " + e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message contains '" + f + "': " + e.getMessage());
        }
        return e;
    }

    // ------------------------------------------------------------------ F32

    @Test
    void f32RoundTripIsExactAndKeepsOrderAndMetadata() throws IOException {
        float[] special = {0f, -0f, 1f, -1f, Float.MIN_VALUE, -Float.MIN_NORMAL, Float.MAX_VALUE, Float.POSITIVE_INFINITY,
                Float.NEGATIVE_INFINITY, Float.NaN, Float.intBitsToFloat(0x7fc12345), 1e-40f, 3.14159265f};
        List<Tensor> tensors = List.of(
                new Tensor("z.weight", new long[] {2, 3, 4}, gaussian(24, 1, 0.7f)),
                new Tensor("a.special", new long[] {special.length}, special),
                new Tensor("m.scalar", new long[] {}, new float[] {42.5f}),
                new Tensor("e.empty", new long[] {0, 5}, new float[0]),
                new Tensor("b.matrix", new long[] {17, 9}, gaussian(153, 2, 3f)));
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        meta.put("note", "ünïcödé ✓ \"quoted\"");
        meta.put("empty", "");
        Path f = tmp.resolve("x.safetensors");
        Safetensors.write(f, tensors, DType.F32, meta);

        assertTensorsEqual(tensors, Safetensors.readAll(f));
        try (Safetensors.Reader r = Safetensors.open(f)) {
            assertEquals(meta, r.metadata(), "__metadata__ preserved");
            assertEquals(List.of("z.weight", "a.special", "m.scalar", "e.empty", "b.matrix"),
                    new ArrayList<>(r.entries().keySet()), "header order is write order");
            r.entries().values().forEach(e -> assertSame(DType.F32, e.dtype(), e.name() + " dtype"));
        }
        long headerLen = ByteBuffer.wrap(Files.readAllBytes(f), 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, headerLen % 8, "header padded to 8 bytes");
        assertEquals((24 + special.length + 1 + 0 + 153) * 4, dataSection(f).length, "data section size");
        assertFalse(Files.exists(tmp.resolve("x.safetensors.tmp")), "temp file renamed away");
    }

    @Test
    void f32OnDiskIsLittleEndianAndNoMetadataMeansEmptyMap() throws IOException {
        Path f = tmp.resolve("le.safetensors");
        Safetensors.write(f, List.of(new Tensor("w", new long[] {2}, new float[] {1f, -2.5f})), DType.F32, null);
        assertArrayEquals(new byte[] {0, 0, (byte) 0x80, 0x3f, 0, 0, 0x20, (byte) 0xc0}, dataSection(f), "F32 LE bytes");
        try (Safetensors.Reader r = Safetensors.open(f)) {
            assertTrue(r.metadata().isEmpty(), "no metadata written, none read");
        }
    }

    @Test
    void readerAcceptsDataOrderDifferentFromHeaderOrder() throws IOException {
        // writers such as the Python one lay data out in their own order; offsets, not header order, decide
        String header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]},"
                + "\"__metadata__\":{\"format\":\"pt\"},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        Path f = raw(tmp.resolve("order.safetensors"), header, f32Bytes(7f, 8f, 1f, 2f, 3f));
        List<Tensor> got = Safetensors.readAll(f);
        assertEquals("a", got.get(0).name());
        assertBitsEqual(new float[] {1f, 2f, 3f}, got.get(0).data(), "a");
        assertBitsEqual(new float[] {7f, 8f}, got.get(1).data(), "b");
    }

    // ------------------------------------------------------------------ F16

    /** {float, expected half bits}: exact values, overflow, subnormals and ties that round to even. */
    private static final float[][] F16_CASES = {
        {1f, 0x3c00}, {-2.5f, 0xc100}, {65504f, 0x7bff}, {-65504f, 0xfbff}, {0.5f, 0x3800}, {2f, 0x4000},
        {0.1f, 0x2e66}, {0.33333334f, 0x3555},
        {65519f, 0x7bff}, // below the midpoint to 65536: stays at max
        {65520f, 0x7c00}, // the midpoint: ties to even, which is infinity
        {-65520f, 0xfc00}, {1e6f, 0x7c00}, {Float.MAX_VALUE, 0x7c00},
        {Float.POSITIVE_INFINITY, 0x7c00}, {Float.NEGATIVE_INFINITY, 0xfc00}, {-0f, 0x8000}, {0f, 0x0000},
        {0x1p-14f, 0x0400}, // smallest normal
        {0x1p-24f, 0x0001}, // smallest subnormal
        {-0x1p-24f, 0x8001}, {1023 * 0x1p-24f, 0x03ff}, // largest subnormal
        {0x1p-25f, 0x0000}, // half the smallest subnormal: ties to even (zero)
        {-0x1p-25f, 0x8000}, {3 * 0x1p-26f, 0x0001}, // above the tie
        {3 * 0x1p-25f, 0x0002}, // 1.5 * 2^-24: ties to even (2)
        {5 * 0x1p-25f, 0x0002}, // 2.5 * 2^-24: ties to even (2)
        {2047 * 0x1p-25f, 0x0400}, // 1023.5 * 2^-24: subnormal rounds up into the smallest normal
        {1f + 0x1p-11f, 0x3c00}, // tie between 0x3c00 and 0x3c01: even
        {1f + 3 * 0x1p-11f, 0x3c02}, // tie between 0x3c01 and 0x3c02: even
        {1f + 0x1p-11f + 0x1p-20f, 0x3c01}, // just above the tie
        {2047f + 0.5f, 0x67ff + 1}, // 2047.5 -> 2048 (tie, 0x67ff odd)
        {Float.MIN_VALUE, 0x0000}, {1e-8f, 0x0000},
    };

    @Test
    void f16KnownBitPatterns() {
        for (float[] c : F16_CASES) {
            short want = (short) (int) c[1];
            short got = DType.floatToHalf(c[0]);
            assertEquals(want, got, "floatToHalf(" + c[0] + "): want 0x" + Integer.toHexString(want & 0xffff)
                    + " got 0x" + Integer.toHexString(got & 0xffff));
        }
        assertEquals(1f, DType.halfToFloat((short) 0x3c00));
        assertEquals(-2.5f, DType.halfToFloat((short) 0xc100));
        assertEquals(65504f, DType.halfToFloat((short) 0x7bff));
        assertEquals(0x1p-24f, DType.halfToFloat((short) 0x0001));
        assertEquals(-0x1p-24f, DType.halfToFloat((short) 0x8001));
        assertEquals(1023 * 0x1p-24f, DType.halfToFloat((short) 0x03ff));
        assertEquals(0x1p-14f, DType.halfToFloat((short) 0x0400));
        assertEquals(Float.POSITIVE_INFINITY, DType.halfToFloat((short) 0x7c00));
        assertEquals(Float.NEGATIVE_INFINITY, DType.halfToFloat((short) 0xfc00));
        assertEquals(0x80000000, Float.floatToRawIntBits(DType.halfToFloat((short) 0x8000)), "-0 keeps its sign");
        assertTrue(Float.isNaN(DType.halfToFloat((short) 0x7e00)), "quiet NaN");
        assertTrue(Float.isNaN(DType.halfToFloat((short) 0x7c01)), "signalling NaN stays NaN");
        short nan = DType.floatToHalf(Float.NaN);
        assertTrue((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0, "NaN -> half NaN, got 0x" + Integer.toHexString(nan & 0xffff));
        short payload = DType.floatToHalf(Float.intBitsToFloat(0x7f800001)); // NaN whose payload is lost by the shift
        assertTrue((payload & 0x3ff) != 0, "low-payload NaN must not become infinity");
    }

    @Test
    void f16EveryHalfRoundTripsExactly() {
        for (int h = 0; h < 0x10000; h++) {
            float f = DType.halfToFloat((short) h);
            if (Float.isNaN(f)) {
                continue;
            }
            assertEquals((short) h, DType.floatToHalf(f), "half 0x" + Integer.toHexString(h) + " = " + f);
        }
    }

    /** Independent reference: nearest half by search over the (monotonic) positive halves, ties to even. */
    private static int referenceHalf(float x) {
        int sign = Float.floatToRawIntBits(x) < 0 ? 0x8000 : 0;
        double a = Math.abs((double) x);
        if (a >= 65520.0) {
            return sign | 0x7c00;
        }
        int lo = 0;
        int hi = 0x7bff;
        while (lo < hi) { // largest h with value(h) <= a
            int mid = (lo + hi + 1) >>> 1;
            if (DType.halfToFloat((short) mid) <= a) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        double vLo = DType.halfToFloat((short) lo);
        double vHi = lo == 0x7bff ? 65536.0 : DType.halfToFloat((short) (lo + 1));
        double dLo = a - vLo;
        double dHi = vHi - a;
        int h = dLo < dHi ? lo : dHi < dLo ? lo + 1 : ((lo & 1) == 0 ? lo : lo + 1);
        return sign | h;
    }

    @Test
    void f16RoundsToNearestEvenOnRandomValues() {
        Random r = new Random(11);
        for (int i = 0; i < 200_000; i++) {
            // random mantissa bits, exponents from deep subnormal to overflow
            int exp = 127 + r.nextInt(50) - 30;
            float x = Float.intBitsToFloat((r.nextBoolean() ? 0x80000000 : 0) | (exp << 23) | r.nextInt(1 << 23));
            int want = referenceHalf(x);
            int got = DType.floatToHalf(x) & 0xffff;
            if (want != got) {
                fail("floatToHalf(" + x + "): want 0x" + Integer.toHexString(want) + " got 0x" + Integer.toHexString(got));
            }
        }
    }

    @Test
    void f16FileRoundTripWithinRounding() throws IOException {
        float[] known = new float[F16_CASES.length];
        for (int i = 0; i < known.length; i++) {
            known[i] = F16_CASES[i][0];
        }
        float[] g = gaussian(1000, 3, 2f);
        List<Tensor> tensors = List.of(new Tensor("known", new long[] {known.length}, known), new Tensor("g", new long[] {10, 100}, g));
        Path f = tmp.resolve("h.safetensors");
        Safetensors.write(f, tensors, DType.F16, Map.of("format", "pt"));
        List<Tensor> back = Safetensors.readAll(f);
        try (Safetensors.Reader r = Safetensors.open(f)) {
            assertSame(DType.F16, r.entries().get("g").dtype());
            assertEquals(Map.of("format", "pt"), r.metadata());
        }
        for (int i = 0; i < known.length; i++) {
            float want = DType.halfToFloat((short) (int) F16_CASES[i][1]);
            assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(back.get(0).data()[i]),
                    "F16 file value of " + known[i] + ": want " + want + " got " + back.get(0).data()[i]);
        }
        for (int i = 0; i < g.length; i++) {
            float got = back.get(1).data()[i];
            assertEquals(DType.halfToFloat(DType.floatToHalf(g[i])), got, "g[" + i + "] is its half rounding");
            // |x| in normal half range: relative error at most 2^-11
            if (Math.abs(g[i]) >= 0x1p-14f) {
                assertTrue(Math.abs(got - g[i]) <= Math.abs(g[i]) * 0x1p-11f, "g[" + i + "] = " + g[i] + " read " + got);
            }
        }
        assertArrayEquals(new long[] {10, 100}, back.get(1).shape());
        assertEquals((known.length + g.length) * 2, dataSection(f).length, "2 bytes per value");
    }

    @Test
    void f16AndBf16OnDiskAreLittleEndian() throws IOException {
        Tensor t = new Tensor("w", new long[] {3}, new float[] {1f, -2.5f, 65504f});
        Path h = tmp.resolve("h.safetensors");
        Safetensors.write(h, List.of(t), DType.F16, null);
        assertArrayEquals(new byte[] {0x00, 0x3c, 0x00, (byte) 0xc1, (byte) 0xff, 0x7b}, dataSection(h), "F16 LE bytes");
        Path b = tmp.resolve("b.safetensors");
        Safetensors.write(b, List.of(t), DType.BF16, null);
        // 65504 = 0x477fe000 -> bf16 rounds up to 0x4780 (65536)
        assertArrayEquals(new byte[] {(byte) 0x80, 0x3f, 0x20, (byte) 0xc0, (byte) 0x80, 0x47}, dataSection(b), "BF16 LE bytes");
        assertBitsEqual(new float[] {1f, -2.5f, 65536f}, Safetensors.readAll(b).get(0).data(), "BF16 read");
    }

    // ------------------------------------------------------------------ BF16

    private static final float[][] BF16_CASES = {
        {1f, 0x3f80}, {-2.5f, 0xc020}, {0f, 0x0000}, {-0f, 0x8000}, {3.140625f, 0x4049},
        {1f + 0x1p-8f, 0x3f80}, // tie between 0x3f80 and 0x3f81: even
        {1f + 3 * 0x1p-8f, 0x3f82}, // tie between 0x3f81 and 0x3f82: even
        {1f + 0x1p-8f + 0x1p-20f, 0x3f81}, // just above the tie
        {1f + 0x1p-9f, 0x3f80}, // below the tie
        {0x1p-132f, 0x0002}, // float subnormal (bits 0x00020000)
        {Float.intBitsToFloat(0x00018001), 0x0002}, // float subnormal just above a tie: up
        {Float.intBitsToFloat(0x00018000), 0x0002}, // float subnormal tie: up to even
        {Float.intBitsToFloat(0x00028000), 0x0002}, // float subnormal tie: down to even
        {Float.MIN_VALUE, 0x0000}, {Float.MAX_VALUE, 0x7f80}, {-Float.MAX_VALUE, 0xff80},
        {Float.POSITIVE_INFINITY, 0x7f80}, {Float.NEGATIVE_INFINITY, 0xff80},
        {0x1.fep127f, 0x7f7f}, // largest bf16
    };

    @Test
    void bf16KnownBitPatterns() {
        for (float[] c : BF16_CASES) {
            short want = (short) (int) c[1];
            short got = DType.floatToBf16(c[0]);
            assertEquals(want, got, "floatToBf16(" + c[0] + "): want 0x" + Integer.toHexString(want & 0xffff)
                    + " got 0x" + Integer.toHexString(got & 0xffff));
        }
        assertEquals(1f, DType.bf16ToFloat((short) 0x3f80));
        assertEquals(-2.5f, DType.bf16ToFloat((short) 0xc020));
        assertEquals(Float.NEGATIVE_INFINITY, DType.bf16ToFloat((short) 0xff80));
        assertTrue(Float.isNaN(DType.bf16ToFloat(DType.floatToBf16(Float.NaN))), "NaN stays NaN");
        assertTrue(Float.isNaN(DType.bf16ToFloat(DType.floatToBf16(Float.intBitsToFloat(0x7f800001)))),
                "NaN with payload only in the low 16 bits stays NaN");
        assertTrue(Float.isNaN(DType.bf16ToFloat(DType.floatToBf16(Float.intBitsToFloat(0xffffffff)))),
                "all-ones NaN stays NaN (no carry out of the exponent)");
        for (int b = 0; b < 0x10000; b++) {
            float f = DType.bf16ToFloat((short) b);
            if (!Float.isNaN(f)) {
                assertEquals((short) b, DType.floatToBf16(f), "bf16 0x" + Integer.toHexString(b) + " round trip");
            }
        }
    }

    @Test
    void bf16RoundsToNearestEvenOnRandomValues() {
        Random r = new Random(5);
        for (int i = 0; i < 200_000; i++) {
            int bits = r.nextInt() & 0x7fffffff;
            if ((bits & 0x7f800000) == 0x7f800000) {
                continue; // inf/NaN checked above
            }
            float x = Float.intBitsToFloat(bits | (r.nextBoolean() ? 0x80000000 : 0));
            double a = Math.abs((double) x);
            int lo = bits & 0xffff0000;
            double vLo = Float.intBitsToFloat(lo);
            double vHi = lo + 0x10000 == 0x7f800000 ? 0x1p128 : Float.intBitsToFloat(lo + 0x10000);
            int want = a - vLo < vHi - a ? lo : vHi - a < a - vLo ? lo + 0x10000 : ((lo >>> 16) & 1) == 0 ? lo : lo + 0x10000;
            want = (want >>> 16) | (x < 0 ? 0x8000 : 0);
            int got = DType.floatToBf16(x) & 0xffff;
            if (want != got) {
                fail("floatToBf16(" + x + "): want 0x" + Integer.toHexString(want) + " got 0x" + Integer.toHexString(got));
            }
        }
    }

    @Test
    void bf16FileRoundTripWithinRounding() throws IOException {
        float[] g = gaussian(777, 4, 5f);
        Path f = tmp.resolve("bf.safetensors");
        Safetensors.write(f, List.of(new Tensor("g", new long[] {7, 111}, g)), DType.BF16, Map.of("k", "v"));
        Tensor back = Safetensors.readAll(f).get(0);
        try (Safetensors.Reader r = Safetensors.open(f)) {
            assertSame(DType.BF16, r.entries().get("g").dtype());
            assertEquals(Map.of("k", "v"), r.metadata());
        }
        for (int i = 0; i < g.length; i++) {
            float got = back.data()[i];
            assertEquals(DType.bf16ToFloat(DType.floatToBf16(g[i])), got, "g[" + i + "] is its bf16 rounding");
            assertTrue(Math.abs(got - g[i]) <= Math.abs(g[i]) * 0x1p-8f, "g[" + i + "] = " + g[i] + " read " + got);
            assertEquals(0, Float.floatToRawIntBits(got) & 0xffff, "widened bf16 has 16 zero low bits");
        }
        assertEquals(g.length * 2, dataSection(f).length);
    }

    // ------------------------------------------------------------------ shards

    @Test
    void shardedWriteReadsBackIdentical() throws IOException {
        List<Tensor> tensors = List.of(
                new Tensor("t0", new long[] {10, 10}, gaussian(100, 10, 1f)), // 400 B
                new Tensor("t1", new long[] {100}, gaussian(100, 11, 1f)), // 400 B
                new Tensor("big", new long[] {30, 10}, gaussian(300, 12, 1f)), // 1200 B > max: a shard of its own
                new Tensor("t3", new long[] {4, 25}, gaussian(100, 13, 1f)),
                new Tensor("t4", new long[] {2, 5, 10}, gaussian(100, 14, 1f)));
        Path dir = tmp.resolve("sharded");
        HfCheckpoint.write(dir, tensors, DType.F32, 900, Map.of("step", "7"));

        assertFalse(Files.exists(dir.resolve(HfCheckpoint.SINGLE)), "no single file when sharded");
        String[] shards = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"};
        for (String s : shards) {
            assertTrue(Files.isRegularFile(dir.resolve(s)), "shard " + s);
            try (Safetensors.Reader r = Safetensors.open(dir.resolve(s))) {
                assertEquals("7", r.metadata().get("step"), s + " metadata");
                assertEquals("pt", r.metadata().get("format"), s + " format");
            }
        }
        JsonNode index = JSON.readTree(dir.resolve(HfCheckpoint.INDEX).toFile());
        assertEquals(700 * 4, index.path("metadata").path("total_size").asLong(), "total_size");
        Map<String, String> weightMap = new LinkedHashMap<>();
        index.get("weight_map").fields().forEachRemaining(e -> weightMap.put(e.getKey(), e.getValue().asText()));
        assertEquals(Map.of("t0", shards[0], "t1", shards[0], "big", shards[1], "t3", shards[2], "t4", shards[2]), weightMap);

        Map<String, Path> where = HfCheckpoint.tensorFiles(dir);
        assertEquals(dir.resolve(shards[1]), where.get("big"), "tensorFiles resolves shard paths");
        List<Tensor> back = new ArrayList<>();
        HfCheckpoint.read(dir, List.of("t0", "t1", "big", "t3", "t4"), back::add);
        assertTensorsEqual(tensors, back);

        // asking in another order gives them shard by shard, each exactly once
        List<Tensor> some = new ArrayList<>();
        HfCheckpoint.read(dir, List.of("t4", "t0"), some::add);
        assertEquals(2, some.size());
        assertBitsEqual(tensors.get(4).data(), some.stream().filter(t -> t.name().equals("t4")).findFirst().orElseThrow().data(), "t4");

        // re-saving into one file replaces the index
        HfCheckpoint.write(dir, tensors, DType.F32, Long.MAX_VALUE, null);
        assertFalse(Files.exists(dir.resolve(HfCheckpoint.INDEX)), "index removed on single-file save");
        List<Tensor> single = new ArrayList<>();
        HfCheckpoint.read(dir, List.of("t0", "t1", "big", "t3", "t4"), single::add);
        assertTensorsEqual(tensors, single);
    }

    // ------------------------------------------------------------------ corrupt files

    @Test
    void fileShorterThanEightBytes() throws IOException {
        Path f = tmp.resolve("short.safetensors");
        Files.write(f, new byte[] {1, 2, 3, 4, 5});
        assertCorrupt(f, "header", () -> Safetensors.open(f), "truncated", "5 bytes");
        Path empty = tmp.resolve("empty.safetensors");
        Files.write(empty, new byte[0]);
        assertCorrupt(empty, "header", () -> Safetensors.open(empty), "truncated");
    }

    @Test
    void headerLengthLargerThanFile() throws IOException {
        Path f = tmp.resolve("hlen.safetensors");
        ByteBuffer b = ByteBuffer.allocate(8 + 20).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(1000);
        b.put("{\"__metadata__\":{}} ".getBytes(StandardCharsets.UTF_8));
        Files.write(f, b.array());
        assertCorrupt(f, "header", () -> Safetensors.open(f), "1000");
        // absurd and negative lengths are refused before any allocation
        for (long len : new long[] {Long.MAX_VALUE, -1L, 0L, 1L << 40}) {
            ByteBuffer c = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
            c.putLong(len);
            Files.write(f, c.array());
            assertCorrupt(f, "header", () -> Safetensors.open(f), Long.toString(len));
        }
    }

    @Test
    void headerNotJson() throws IOException {
        Path f = raw(tmp.resolve("notjson.safetensors"), "this is not {json", new byte[16]);
        assertCorrupt(f, "header", () -> Safetensors.open(f), "JSON");
        Path arr = raw(tmp.resolve("array.safetensors"), "[1, 2, 3]", new byte[0]);
        assertCorrupt(arr, "header", () -> Safetensors.open(arr), "not a JSON object");
        Path cut = raw(tmp.resolve("cut.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"sha", new byte[0]);
        assertCorrupt(cut, "header", () -> Safetensors.open(cut), "JSON");
    }

    @Test
    void tensorDataTruncated() throws IOException {
        Path f = tmp.resolve("trunc.safetensors");
        Safetensors.write(f, List.of(new Tensor("first", new long[] {4}, gaussian(4, 1, 1f)),
                new Tensor("second", new long[] {3, 5}, gaussian(15, 2, 1f))), DType.F32, null);
        long size = Files.size(f);
        truncate(f, size - 3);
        assertCorrupt(f, "second", () -> Safetensors.open(f), "truncated");
        assertCorrupt(f, "second", () -> Safetensors.readAll(f), "truncated");
        truncate(f, size - 15 * 4 - 10); // cut inside the first tensor's data
        assertCorrupt(f, "first", () -> Safetensors.open(f), "truncated");
    }

    @Test
    void unknownDtype() throws IOException {
        for (String dt : new String[] {"F64", "I8", "Q4_K", "f32"}) {
            Path f = raw(tmp.resolve(dt + ".safetensors"),
                    "{\"ok\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            + "\"layer.bad\":{\"dtype\":\"" + dt + "\",\"shape\":[2],\"data_offsets\":[4,20]}}",
                    new byte[20]);
            assertCorrupt(f, "layer.bad", () -> Safetensors.open(f), dt);
        }
        Path none = raw(tmp.resolve("nodtype.safetensors"), "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]);
        assertCorrupt(none, "w", () -> Safetensors.open(none), "dtype");
        Path notObj = raw(tmp.resolve("notobj.safetensors"), "{\"w\":5}", new byte[4]);
        assertCorrupt(notObj, "w", () -> Safetensors.open(notObj), "dtype");
    }

    @Test
    void dataOffsetsInconsistentWithShape() throws IOException {
        String[] bad = {
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", // needs 24
            "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", // needs 12
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,0]}}", // end before begin
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[-4,20]}}",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0]}}",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3]}}",
            "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,24]}}",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-3],\"data_offsets\":[0,24]}}",
            // 2^62 * 2^2 elements * 4 bytes overflows a long to 0
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}}",
        };
        for (int i = 0; i < bad.length; i++) {
            Path f = raw(tmp.resolve("off" + i + ".safetensors"), bad[i], new byte[64]);
            int k = i;
            CheckpointException e = assertThrows(CheckpointException.class, () -> Safetensors.readAll(f), "case " + k + ": " + bad[k]);
            assertEquals("w", e.field(), "case " + k + " field: " + e.getMessage());
            assertEquals(f, e.file(), "case " + k + " file: " + e.getMessage());
            assertTrue(e.getMessage().contains(f.toString()), "case " + k + " names the file: " + e.getMessage());
        }
        Path f = raw(tmp.resolve("off.safetensors"), bad[0], new byte[64]);
        assertCorrupt(f, "w", () -> Safetensors.open(f), "data_offsets", "24");
    }

    @Test
    void readingAnAbsentTensorNamesIt() throws IOException {
        Path f = tmp.resolve("one.safetensors");
        Safetensors.write(f, List.of(new Tensor("w", new long[] {1}, new float[] {1})), DType.F32, null);
        try (Safetensors.Reader r = Safetensors.open(f)) {
            assertCorrupt(f, "nope", () -> r.read("nope"), "missing");
        }
        Path dir = tmp.resolve("d");
        HfCheckpoint.write(dir, List.of(new Tensor("w", new long[] {1}, new float[] {1})), DType.F32, 1 << 20, null);
        assertCorrupt(dir.resolve(HfCheckpoint.SINGLE), "nope", () -> HfCheckpoint.read(dir, List.of("w", "nope"), t -> {}), "missing");
        Path emptyDir = Files.createDirectories(tmp.resolve("nothing"));
        assertCorrupt(emptyDir.resolve(HfCheckpoint.SINGLE), "file", () -> HfCheckpoint.tensorFiles(emptyDir), HfCheckpoint.INDEX);
    }

    // ------------------------------------------------------------------ LlamaModel

    private static Map<String, Tensor> randomWeights(LlamaConfig c, long seed) {
        return TestWeights.random(c, seed, 0.3, 0.3);
    }

    private static final int[] IDS = {3, 17, 0, 22, 5, 5, 11, 36, 8, 1};

    private static float[] logits(LlamaModel model, NDManager root) {
        try (NDManager step = root.newSubManager()) {
            return model.forward(model.ids(step, new int[][] {IDS}), null, dev.morastream.models.llama.LinearOp.PLAIN).toFloatArray();
        }
    }

    private static Path savedModel(Path dir, LlamaConfig c, DType dtype, long maxShard) throws IOException {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel m = LlamaModel.fromTensors(c, randomWeights(c, 9), root)) {
            m.save(dir, dtype, maxShard, Map.of("morastream", "test"));
        }
        return dir;
    }

    private void checkSaveLoadF32(LlamaConfig c, long maxShard) throws IOException {
        Map<String, Tensor> w = randomWeights(c, 9);
        Path dir = tmp.resolve("model-" + maxShard);
        try (NDManager root = NDManager.newBaseManager(); LlamaModel m = LlamaModel.fromTensors(c, w, root)) {
            float[] want = logits(m, root);
            m.save(dir, DType.F32, maxShard, Map.of("morastream", "test"));
            try (LlamaModel back = LlamaModel.load(dir, root)) {
                assertEquals(c, back.config(), "config.json round trip");
                assertEquals(new ArrayList<>(w.keySet()), new ArrayList<>(back.weights().keySet()), "weights in HF order");
                for (Map.Entry<String, NDArray> e : back.weights().entrySet()) {
                    assertArrayEquals(w.get(e.getKey()).shape(), e.getValue().getShape().getShape(), e.getKey() + " shape");
                    assertBitsEqual(w.get(e.getKey()).data(), e.getValue().toFloatArray(), e.getKey());
                }
                float[] got = logits(back, root);
                assertBitsEqual(want, got, "logits after F32 save/load");
            }
        }
    }

    @Test
    void llamaSaveF32ThenLoadIsBitIdentical() throws IOException {
        checkSaveLoadF32(LlamaConfig.micro(37), Long.MAX_VALUE);
    }

    @Test
    void llamaSaveF32ShardedThenLoadIsBitIdenticalWithUntiedHeadAndBiases() throws IOException {
        LlamaConfig c = new LlamaConfig(24, 40, 3, 3, 3, 8, 37, 64, 1e-6, 500000.0,
                new LlamaConfig.RopeScaling("llama3", 8, 1, 4, 16), false, true, true, 1, List.of(2, 3));
        checkSaveLoadF32(c, 8 * 1024);
        assertTrue(Files.isRegularFile(tmp.resolve("model-" + 8 * 1024).resolve(HfCheckpoint.INDEX)), "really sharded");
    }

    @Test
    void llamaSaveBf16ThenLoadGivesBf16RoundedWeights() throws IOException {
        LlamaConfig c = LlamaConfig.micro(37);
        Map<String, Tensor> w = randomWeights(c, 9);
        Path f32 = tmp.resolve("f32");
        Path bf16 = tmp.resolve("bf16");
        try (NDManager root = NDManager.newBaseManager(); LlamaModel m = LlamaModel.fromTensors(c, w, root)) {
            float[] want = logits(m, root);
            m.save(f32, DType.F32, Long.MAX_VALUE, null);
            m.save(bf16, DType.BF16, Long.MAX_VALUE, null);
            try (Safetensors.Reader r = Safetensors.open(bf16.resolve(HfCheckpoint.SINGLE))) {
                r.entries().values().forEach(e -> assertSame(DType.BF16, e.dtype(), e.name() + " stored as BF16"));
            }
            assertTrue(Files.size(bf16.resolve(HfCheckpoint.SINGLE)) < 0.6 * Files.size(f32.resolve(HfCheckpoint.SINGLE)),
                    "BF16 file about half the F32 one");
            try (LlamaModel back = LlamaModel.load(bf16, root)) {
                assertEquals(c, back.config());
                boolean anyRounded = false;
                for (Map.Entry<String, NDArray> e : back.weights().entrySet()) {
                    float[] orig = w.get(e.getKey()).data();
                    float[] rounded = new float[orig.length];
                    for (int i = 0; i < orig.length; i++) {
                        rounded[i] = DType.bf16ToFloat(DType.floatToBf16(orig[i]));
                        anyRounded |= rounded[i] != orig[i];
                    }
                    assertBitsEqual(rounded, e.getValue().toFloatArray(), e.getKey() + " (bf16)");
                }
                assertTrue(anyRounded, "random weights must actually lose bits in BF16");
                float[] got = logits(back, root);
                double maxErr = 0;
                double maxAbs = 0;
                for (int i = 0; i < want.length; i++) {
                    maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
                    maxAbs = Math.max(maxAbs, Math.abs(want[i]));
                }
                assertNotEquals(0.0, maxErr, "bf16 logits differ from f32 ones");
                assertTrue(maxErr < 0.05 * maxAbs, "bf16 logits close to f32: max err " + maxErr + ", max |logit| " + maxAbs);
            }
        }
    }

    @Test
    void loadWithMissingTensor() throws IOException {
        LlamaConfig c = LlamaConfig.micro(37);
        Path dir = savedModel(tmp.resolve("m"), c, DType.F32, Long.MAX_VALUE);
        Path file = dir.resolve(HfCheckpoint.SINGLE);
        String gone = "model.layers.1.mlp.up_proj.weight";
        List<Tensor> kept = new ArrayList<>(Safetensors.readAll(file));
        assertTrue(kept.removeIf(t -> t.name().equals(gone)), "fixture had the tensor");
        Safetensors.write(file, kept, DType.F32, null);
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(file, gone, () -> LlamaModel.load(dir, root), "missing");
        }
    }

    @Test
    void loadWithMissingTensorInShardedCheckpoint() throws IOException {
        LlamaConfig c = LlamaConfig.micro(37);
        Path dir = savedModel(tmp.resolve("m"), c, DType.F32, 8 * 1024);
        Path index = dir.resolve(HfCheckpoint.INDEX);
        String gone = "model.norm.weight";
        com.fasterxml.jackson.databind.node.ObjectNode n = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(index.toFile());
        assertTrue(((com.fasterxml.jackson.databind.node.ObjectNode) n.get("weight_map")).remove(gone) != null, "fixture had the tensor");
        JSON.writeValue(index.toFile(), n);
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(index, gone, () -> LlamaModel.load(dir, root), "missing");
        }
    }

    @Test
    void loadWithWrongShape() throws IOException {
        LlamaConfig c = LlamaConfig.micro(37);
        Path dir = savedModel(tmp.resolve("m"), c, DType.F32, Long.MAX_VALUE);
        Path file = dir.resolve(HfCheckpoint.SINGLE);
        String bad = "model.layers.0.mlp.down_proj.weight"; // (d, f) = (32, 48)
        List<Tensor> ts = new ArrayList<>();
        for (Tensor t : Safetensors.readAll(file)) {
            ts.add(t.name().equals(bad) ? new Tensor(bad, new long[] {48, 32}, t.data()) : t);
        }
        Safetensors.write(file, ts, DType.F32, null);
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(file, bad, () -> LlamaModel.load(dir, root), "[48, 32]", "[32, 48]");
        }
    }

    @Test
    void loadWithUnknownArchitecture() throws IOException {
        LlamaConfig c = LlamaConfig.micro(37);
        Path dir = savedModel(tmp.resolve("m"), c, DType.F32, Long.MAX_VALUE);
        Path config = dir.resolve("config.json");
        String text = Files.readString(config);
        assertTrue(text.contains("LlamaForCausalLM"), "fixture config names Llama");
        Files.writeString(config, text.replace("LlamaForCausalLM", "GPT2LMHeadModel"));
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(config, "architectures", () -> LlamaModel.load(dir, root), "GPT2LMHeadModel");
        }
        // without "architectures", model_type decides
        Files.writeString(config, "{\"model_type\": \"gpt2\", \"hidden_size\": 32}");
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(config, "model_type", () -> LlamaModel.load(dir, root), "gpt2");
        }
    }

    @Test
    void loadWithMissingConfig() throws IOException {
        Path dir = savedModel(tmp.resolve("m"), LlamaConfig.micro(37), DType.F32, Long.MAX_VALUE);
        Files.delete(dir.resolve("config.json"));
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(dir.resolve("config.json"), "config.json", () -> LlamaModel.load(dir, root), "not found");
        }
    }

    @Test
    void indexReferringToMissingShard() throws IOException {
        Path dir = savedModel(tmp.resolve("m"), LlamaConfig.micro(37), DType.F32, 8 * 1024);
        String shard;
        try (var s = Files.list(dir)) {
            List<String> shards = s.map(p -> p.getFileName().toString()).filter(n -> n.matches("model-\\d{5}-of-\\d{5}\\.safetensors")).sorted().toList();
            assertTrue(shards.size() >= 2, "fixture is sharded: " + shards);
            shard = shards.get(1);
        }
        Files.delete(dir.resolve(shard));
        Path index = dir.resolve(HfCheckpoint.INDEX);
        try (NDManager root = NDManager.newBaseManager()) {
            assertCorrupt(index, "weight_map", () -> LlamaModel.load(dir, root), shard);
        }
        Files.writeString(index, "{\"weight_map\": ");
        assertCorrupt(index, "index", () -> HfCheckpoint.tensorFiles(dir), "JSON");
        Files.writeString(index, "{\"metadata\": {}}");
        assertCorrupt(index, "weight_map", () -> HfCheckpoint.tensorFiles(dir), "missing");
    }

    @Test
    void rawHelperWritesWhatTheReaderExpects() throws IOException {
        // guards the hand-made corrupt files above: the same helper with a good header reads fine
        Path f = raw(tmp.resolve("good.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", f32Bytes(1.5f, -3f));
        assertBitsEqual(new float[] {1.5f, -3f}, Safetensors.readAll(f).get(0).data(), "raw helper");
    }
}
