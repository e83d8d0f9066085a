package dev.morastream.models.generate;

import java.util.List;
import java.util.function.Consumer;

/**
 * Turns the decoded text of the tokens generated so far into deltas for a listener, such that the
 * deltas concatenate to the final text exactly. It holds back a trailing run of U+FFFD (the
 * decoding of an incomplete UTF-8 sequence, which a later byte may complete) and any suffix that
 * could be the start of a stop string, and cuts the text before the first stop string.
 *
 * <p>Assumes the tokenizer decodes prefix-stably: the decoding of more ids extends the decoding of
 * fewer, apart from trailing U+FFFD. Byte-level and SentencePiece decoders are; a violation is
 * reported as an {@link IllegalStateException} rather than streamed wrongly.
 */
final class StreamingText {
    private static final char REPLACEMENT = '\uFFFD';

    private final List<String> stops;
    private final int longestStop;
    private final Consumer<String> sink;
    private final StringBuilder emitted = new StringBuilder();
    private boolean stopped;

    StreamingText(List<String> stops, Consumer<String> sink) {
        this.stops = List.copyOf(stops);
        this.longestStop = stops.stream().mapToInt(String::length).max().orElse(0);
        this.sink = sink;
    }

    /**
     * Takes the decoding of all tokens generated so far and emits what is now certain.
     *
     * @return true when the text contains a stop string (the text is then final)
     */
    boolean update(String full) {
        if (stopped) {
            throw new IllegalStateException("already stopped at a stop string");
        }
        checkPrefix(full);
        int done = emitted.length();
        int cut = firstStop(full, Math.max(0, done - longestStop + 1));
        if (cut >= 0) {
            emit(full, done, Math.max(done, cut));
            stopped = true;
            return true;
        }
        int safe = full.length();
        while (safe > done && full.charAt(safe - 1) == REPLACEMENT) {
            safe--;
        }
        emit(full, done, safe - stopPrefixLength(full, done, safe));
        return false;
    }

    /** Ends the stream with the final decoding, releasing whatever was held back; returns the text. */
    String finish(String full) {
        if (!stopped) {
            checkPrefix(full);
            emit(full, emitted.length(), full.length());
        }
        return emitted.toString();
    }

    /** Text emitted so far. */
    String text() {
        return emitted.toString();
    }

    private void emit(String full, int from, int to) {
        if (to > from) {
            String delta = full.substring(from, to);
            emitted.append(delta);
            sink.accept(delta);
        }
    }

    private void checkPrefix(String full) {
        if (!full.startsWith(emitted.toString())) {
            throw new IllegalStateException("tokenizer decoding is not prefix-stable: streamed \""
                    + emitted + "\" but the text is now \"" + full + "\"");
        }
    }

    /** Start of the earliest stop string at or after {@code from}, or -1. */
    private int firstStop(String full, int from) {
        int best = -1;
        for (String s : stops) {
            int i = full.indexOf(s, from);
            if (i >= 0 && (best < 0 || i < best)) {
                best = i;
            }
        }
        return best;
    }

    /** Length of the longest suffix of {@code full[from, to)} that is a proper prefix of a stop string. */
    private int stopPrefixLength(String full, int from, int to) {
        int longest = 0;
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, to - from); k > longest; k--) {
                if (full.regionMatches(to - k, s, 0, k)) {
                    longest = k;
                    break;
                }
            }
        }
        return longest;
    }
}
