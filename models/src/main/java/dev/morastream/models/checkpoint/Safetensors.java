package dev.morastream.models.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reader and writer of the safetensors format: an 8-byte little-endian header length, a JSON header
 * {@code {name: {dtype, shape, data_offsets}, __metadata__: {...}}}, then raw little-endian data.
 *
 * <p>F32, F16 and BF16 are read and widened to F32 here in Java (BF16 tensors abort the PyTorch
 * build DJL uses, so they never reach the engine). Every malformed input raises a {@link
 * CheckpointException} naming the file and the field or tensor.
 */
public final class Safetensors {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long MAX_HEADER = 100L * 1024 * 1024;

    private Safetensors() {}

    /** Header entry of one tensor. */
    public record Entry(String name, DType dtype, long[] shape, long begin, long end) {}

    /** An opened file: its header, and lazy access to each tensor's data. */
    public static final class Reader implements AutoCloseable {
        private final Path file;
        private final FileChannel channel;
        private final long dataStart;
        private final Map<String, Entry> entries;
        private final Map<String, String> metadata;

        private Reader(Path file, FileChannel channel, long dataStart, Map<String, Entry> entries, Map<String, String> metadata) {
            this.file = file;
            this.channel = channel;
            this.dataStart = dataStart;
            this.entries = entries;
            this.metadata = metadata;
        }

        public Path file() {
            return file;
        }

        /** Tensors in header order. */
        public Map<String, Entry> entries() {
            return entries;
        }

        /** The {@code __metadata__} map. */
        public Map<String, String> metadata() {
            return metadata;
        }

        /** Reads one tensor, widened to F32. */
        public Tensor read(String name) {
            Entry e = entries.get(name);
            if (e == null) {
                throw new CheckpointException(file, name, "missing tensor");
            }
            long n = Tensor.numel(e.shape());
            if (n > Integer.MAX_VALUE) {
                throw new CheckpointException(file, name, "tensor too large for one array: " + n);
            }
            float[] out = new float[(int) n];
            long len = e.end() - e.begin();
            try {
                MappedByteBuffer buf = channel.map(FileChannel.MapMode.READ_ONLY, dataStart + e.begin(), len);
                buf.order(ByteOrder.LITTLE_ENDIAN);
                switch (e.dtype()) {
                    case F32 -> buf.asFloatBuffer().get(out);
                    case F16 -> {
                        for (int i = 0; i < out.length; i++) {
                            out[i] = DType.halfToFloat(buf.getShort(2 * i));
                        }
                    }
                    case BF16 -> {
                        for (int i = 0; i < out.length; i++) {
                            out[i] = DType.bf16ToFloat(buf.getShort(2 * i));
                        }
                    }
                }
            } catch (IOException ex) {
                throw new CheckpointException(file, name, "cannot read data: " + ex.getMessage());
            }
            return new Tensor(name, e.shape(), out);
        }

        @Override
        public void close() {
            try {
                channel.close();
            } catch (IOException ignored) {
                // read-only channel: nothing to flush
            }
        }
    }

    /** Opens a file and validates its whole header against the file size. */
    public static Reader open(Path file) {
        FileChannel ch;
        try {
            ch = FileChannel.open(file, StandardOpenOption.READ);
        } catch (IOException e) {
            throw new CheckpointException(file, "file", "cannot open: " + e);
        }
        try {
            long size = ch.size();
            if (size < 8) {
                throw new CheckpointException(file, "header", "truncated file: " + size + " bytes, no header length");
            }
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0);
            long headerLen = lenBuf.getLong(0);
            if (headerLen <= 0 || headerLen > MAX_HEADER) {
                throw new CheckpointException(file, "header", "corrupt header length " + headerLen);
            }
            if (8 + headerLen > size) {
                throw new CheckpointException(
                        file, "header", "truncated file: header needs " + headerLen + " bytes, file has " + (size - 8));
            }
            ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
            readFully(ch, hb, 8);
            JsonNode header;
            try {
                header = JSON.readTree(new String(hb.array(), StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new CheckpointException(file, "header", "corrupt header JSON: " + e.getMessage());
            }
            if (header == null || !header.isObject()) {
                throw new CheckpointException(file, "header", "corrupt header: not a JSON object");
            }
            long dataStart = 8 + headerLen;
            long dataLen = size - dataStart;
            Map<String, Entry> entries = new LinkedHashMap<>();
            Map<String, String> metadata = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> f = it.next();
                if (f.getKey().equals("__metadata__")) {
                    f.getValue().fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
                    continue;
                }
                entries.put(f.getKey(), parseEntry(file, f.getKey(), f.getValue(), dataLen));
            }
            return new Reader(file, ch, dataStart, entries, metadata);
        } catch (IOException e) {
            closeQuietly(ch);
            throw new CheckpointException(file, "file", "cannot read: " + e);
        } catch (RuntimeException e) {
            closeQuietly(ch);
            throw e;
        }
    }

    private static Entry parseEntry(Path file, String name, JsonNode v, long dataLen) {
        String dt = v.path("dtype").asText(null);
        DType dtype = DType.parse(dt);
        if (dtype == null) {
            throw new CheckpointException(file, name, "unsupported or missing dtype '" + dt + "' (F32, F16, BF16)");
        }
        JsonNode sh = v.get("shape");
        JsonNode off = v.get("data_offsets");
        if (sh == null || !sh.isArray() || off == null || !off.isArray() || off.size() != 2) {
            throw new CheckpointException(file, name, "corrupt header entry: needs shape and data_offsets[2]");
        }
        long[] shape = new long[sh.size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = sh.get(i).asLong(-1);
            if (shape[i] < 0) {
                throw new CheckpointException(file, name, "corrupt shape " + sh);
            }
        }
        long begin = off.get(0).asLong(-1);
        long end = off.get(1).asLong(-1);
        long want;
        try {
            want = dtype.bytes();
            for (long d : shape) {
                want = Math.multiplyExact(want, d);
            }
        } catch (ArithmeticException overflow) {
            throw new CheckpointException(file, name, "corrupt shape " + sh + ": size overflows");
        }
        if (begin < 0 || end < begin || end - begin != want) {
            throw new CheckpointException(
                    file, name, "corrupt data_offsets " + off + ": shape " + sh + " of " + dtype + " needs " + want + " bytes");
        }
        if (end > dataLen) {
            throw new CheckpointException(
                    file, name, "truncated file: tensor ends at byte " + end + " of data, file has " + dataLen);
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    /** Writes tensors (in the given order) in one dtype, atomically (temp file then rename). */
    public static void write(Path file, List<Tensor> tensors, DType dtype, Map<String, String> metadata) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode m = header.putObject("__metadata__");
            metadata.forEach(m::put);
        }
        long offset = 0;
        for (Tensor t : tensors) {
            ObjectNode e = header.putObject(t.name());
            e.put("dtype", dtype.name());
            var shape = e.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            long len = (long) t.data().length * dtype.bytes();
            e.putArray("data_offsets").add(offset).add(offset + len);
            offset += len;
        }
        byte[] hjson = JSON.writeValueAsBytes(header);
        int padded = (hjson.length + 7) / 8 * 8;
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.createDirectories(file.toAbsolutePath().getParent());
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
            head.putLong(padded);
            head.put(hjson);
            while (head.position() < head.capacity()) {
                head.put((byte) ' ');
            }
            head.flip();
            writeFully(ch, head);
            for (Tensor t : tensors) {
                float[] d = t.data();
                ByteBuffer b = ByteBuffer.allocate(d.length * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
                switch (dtype) {
                    case F32 -> b.asFloatBuffer().put(d);
                    case F16 -> {
                        for (float f : d) {
                            b.putShort(DType.floatToHalf(f));
                        }
                    }
                    case BF16 -> {
                        for (float f : d) {
                            b.putShort(DType.floatToBf16(f));
                        }
                    }
                }
                b.position(0);
                writeFully(ch, b);
            }
            ch.force(true);
        }
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    /** Reads every tensor of a file. */
    public static List<Tensor> readAll(Path file) {
        try (Reader r = open(file)) {
            List<Tensor> out = new ArrayList<>();
            for (String n : r.entries().keySet()) {
                out.add(r.read(n));
            }
            return out;
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int n = ch.read(b, pos + b.position());
            if (n < 0) {
                throw new IOException("unexpected end of file");
            }
        }
        b.flip();
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private static void closeQuietly(FileChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // already failing
        }
    }
}
