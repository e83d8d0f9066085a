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

    /** {@code offset} or {@code offset:skip}, the form stored in a checkpoint's metadata. */
    @Override
    public String toString() {
        return skipTokens == 0 ? Long.toString(offset) : offset + ":" + skipTokens;
    }

    public static ResumePoint parse(String s) {
        int c = s.indexOf(':');
        return c < 0 ? at(Long.parseLong(s.trim()))
                : new ResumePoint(Long.parseLong(s.substring(0, c).trim()), Integer.parseInt(s.substring(c + 1).trim()));
    }
}
