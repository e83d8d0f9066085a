package dev.morastream.actors.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The promotion audit log: one JSON object per line, appended and fsynced. Reading skips lines that
 * are torn or corrupt (with a warning) instead of failing; appending after a torn last line starts
 * a new line first, so one torn write never spoils the next record.
 */
public final class AuditLog {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Logger log = LoggerFactory.getLogger(AuditLog.class);

    private AuditLog() {}

    /** The records read, and how many lines were skipped as unreadable. */
    public record Tail(List<JsonNode> records, int skipped) {
        public Tail {
            records = List.copyOf(records);
        }
    }

    /** Appends one record and fsyncs the file; throws when the file cannot be written. */
    public static void append(Path file, ObjectNode record) throws IOException {
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) {
            Files.createDirectories(parent);
        }
        byte[] line = (JSON.writeValueAsString(record) + "\n").getBytes(StandardCharsets.UTF_8);
        // one writer (the supervisor): write at the end, after looking at the last byte
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.READ)) {
            long size = ch.size();
            ByteBuffer buf = ByteBuffer.wrap(line);
            if (size > 0) {
                ByteBuffer last = ByteBuffer.allocate(1);
                ch.read(last, size - 1);
                if (last.get(0) != '\n') {
                    buf = ByteBuffer.allocate(line.length + 1).put((byte) '\n').put(line).flip();
                }
            }
            long pos = size;
            while (buf.hasRemaining()) {
                pos += ch.write(buf, pos);
            }
            ch.force(true);
        }
    }

    /**
     * The last {@code max} readable records of {@code file} (none when it does not exist). A line
     * that is not valid UTF-8 or not a JSON object is skipped and counted.
     */
    public static Tail tail(Path file, int max) throws IOException {
        if (file == null || !Files.isRegularFile(file)) {
            return new Tail(List.of(), 0);
        }
        byte[] all = Files.readAllBytes(file);
        List<JsonNode> out = new ArrayList<>();
        int skipped = 0;
        CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder();
        int start = 0;
        for (int i = 0; i <= all.length; i++) {
            if (i < all.length && all[i] != '\n') {
                continue;
            }
            if (i > start) {
                Optional<JsonNode> n = parse(utf8, all, start, i - start);
                if (n.isPresent()) {
                    out.add(n.get());
                } else {
                    skipped++;
                }
            }
            start = i + 1;
        }
        if (skipped > 0) {
            log.warn("audit log {}: skipped {} torn or corrupt line(s)", file, skipped);
        }
        return new Tail(out.subList(Math.max(0, out.size() - max), out.size()), skipped);
    }

    private static Optional<JsonNode> parse(CharsetDecoder utf8, byte[] b, int off, int len) {
        String s;
        try {
            s = utf8.decode(ByteBuffer.wrap(b, off, len)).toString();
        } catch (CharacterCodingException e) {
            return Optional.empty();
        }
        if (s.isBlank()) {
            return Optional.empty();
        }
        try {
            JsonNode n = JSON.readTree(s);
            return n != null && n.isObject() && n.hasNonNull("decision") ? Optional.of(n) : Optional.empty();
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    /** The decision of a record (every name ever written parses, e.g. old {@code rolled_back} lines). */
    public static PromotionDecision decision(JsonNode record) {
        return PromotionDecision.parse(record.path("decision").asText());
    }
}
