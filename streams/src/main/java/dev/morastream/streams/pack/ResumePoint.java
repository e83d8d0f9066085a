package dev.morastream.streams.pack;

/**
 * Where a domain resumes in one partition: every record of the domain below {@code offset} is
 * absorbed, and so are the first {@code skipTokens} tokens (BOS included) of the record at
 * {@code offset} when it belongs to the domain (a record split across two batches).
 */
public record ResumePoint(long offset, int skipTokens) {
    public ResumePoint {
        if (offset < 0 || skipTokens < 0) {
            throw new IllegalArgumentException("negative resume point " + offset + "/" + skipTokens);
        }
    }

    public static ResumePoint at(long offset) {
        return new ResumePoint(offset, 0);
    }

    /** The point further on: the higher offset, or at the same offset the one that skips more tokens. */
    public static ResumePoint later(ResumePoint a, ResumePoint b) {
        int c = Long.compare(a.offset(), b.offset());
        return (c != 0 ? c > 0 : a.skipTokens() >= b.skipTokens()) ? a : b;
    }

    /** {@code offset} or {@code offset:skip}, the form stored in a checkpoint's metadata. */
    @Override
    public String toString() {
        return skipTokens == 0 ? Long.toString(offset) : offset + ":" + skipTokens;
    }

    /** Metadata keys of a checkpoint: {@code kafka.offset.<topic>.<partition>}. */
    public static final String METADATA_PREFIX = "kafka.offset.";

    /** Resume points as entries of a trainer checkpoint's metadata map. */
    public static java.util.Map<String, String> toMetadata(java.util.Map<org.apache.kafka.common.TopicPartition, ResumePoint> points) {
        java.util.Map<String, String> m = new java.util.TreeMap<>();
        points.forEach((tp, p) -> m.put(METADATA_PREFIX + tp.topic() + "." + tp.partition(), p.toString()));
        return m;
    }

    /** The resume points in a checkpoint's metadata map (other entries are ignored). */
    public static java.util.Map<org.apache.kafka.common.TopicPartition, ResumePoint> fromMetadata(java.util.Map<String, String> metadata) {
        java.util.Map<org.apache.kafka.common.TopicPartition, ResumePoint> m = new java.util.HashMap<>();
        metadata.forEach((k, v) -> {
            if (k.startsWith(METADATA_PREFIX)) {
                String rest = k.substring(METADATA_PREFIX.length());
                int dot = rest.lastIndexOf('.');
                m.put(new org.apache.kafka.common.TopicPartition(rest.substring(0, dot), Integer.parseInt(rest.substring(dot + 1))), parse(v));
            }
        });
        return m;
    }

    public static ResumePoint parse(String s) {
        int c = s.indexOf(':');
        return c < 0 ? at(Long.parseLong(s.trim()))
                : new ResumePoint(Long.parseLong(s.substring(0, c).trim()), Integer.parseInt(s.substring(c + 1).trim()));
    }
}
