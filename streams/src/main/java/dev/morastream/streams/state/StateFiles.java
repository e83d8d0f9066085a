package dev.morastream.streams.state;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.stream.Stream;

/** A directory of files as state-store values ({@code prefix + relative path}, {@code /}-separated), and back. */
public final class StateFiles {
    private StateFiles() {}

    /** Every regular file under {@code dir}, keyed {@code prefix + its path relative to dir}, in path order. */
    public static Map<String, byte[]> read(Path dir, String prefix) throws IOException {
        Map<String, byte[]> out = new LinkedHashMap<>();
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path f : (Iterable<Path>) files.filter(Files::isRegularFile).sorted()::iterator) {
                out.put(prefix + dir.relativize(f).toString().replace('\\', '/'), Files.readAllBytes(f));
            }
        }
        return out;
    }

    /**
     * Writes each value whose key starts with {@code prefix} to {@code dir}, at the key's rest;
     * a key that would leave {@code dir} ({@code ../}) is refused.
     */
    public static void write(Map<String, byte[]> values, String prefix, Path dir) throws IOException {
        Path root = dir.toAbsolutePath().normalize();
        for (Map.Entry<String, byte[]> f : values.entrySet()) {
            if (!f.getKey().startsWith(prefix)) {
                continue;
            }
            Path out = root.resolve(f.getKey().substring(prefix.length())).normalize();
            if (!out.startsWith(root) || out.equals(root)) {
                throw new IOException("state store key " + f.getKey() + " leaves the directory " + dir);
            }
            Files.createDirectories(out.getParent());
            Files.write(out, f.getValue());
        }
    }
}
