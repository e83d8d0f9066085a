package dev.morastream.streams.pack;

/** Offsets {@code [first, next)} of one partition: {@code first} of the first record a batch holds tokens of. */
public record OffsetRange(long first, long next) {
    public OffsetRange {
        if (first < 0 || next < first) {
            throw new IllegalArgumentException("bad offset range [" + first + ", " + next + ")");
        }
    }
}
