package dev.morastream.models.train;

import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.List;

/**
 * Packs documents into fixed-length training windows: each document is framed (BOS, text, EOS),
 * documents follow each other in one token stream, and the stream is cut into windows of {@code
 * seqLen + 1} tokens (position t predicts t + 1). For prompt/completion documents the completion
 * mask marks the targets that belong to the completion.
 */
public final class DocumentPacker {
    /** A document: plain text ({@code prompt} null) or a prompt with its completion. */
    public record Document(String prompt, String text) {
        public static Document text(String t) {
            return new Document(null, t);
        }
    }

    private final TextTokenizer tok;
    private final int seqLen;
    private final List<Integer> ids = new ArrayList<>();
    private final List<Boolean> completion = new ArrayList<>();

    public DocumentPacker(TextTokenizer tok, int seqLen) {
        this.tok = tok;
        this.seqLen = seqLen;
    }

    /** Appends a document to the stream. */
    public void add(Document d) {
        if (d.prompt() == null) {
            for (int id : tok.encodeFramed(d.text(), true)) {
                ids.add(id);
                completion.add(false);
            }
            return;
        }
        int[] p = tok.encodeFramed(d.prompt(), false);
        int[] c = tok.encode(d.text());
        for (int id : p) {
            ids.add(id);
            completion.add(false);
        }
        for (int id : c) {
            ids.add(id);
            completion.add(true);
        }
        if (!tok.eos().isEmpty()) {
            ids.add(tok.eos().iterator().next());
            completion.add(true);
        }
    }

    /**
     * Number of distinct windows: complete windows of the stream, or 1 when the whole stream is
     * shorter than a window (it is then repeated to fill it).
     */
    public int windows() {
        return ids.isEmpty() ? 0 : Math.max(1, ids.size() / (seqLen + 1));
    }

    /**
     * Window {@code i} (0-based, wrapping around the stream so that training can run for more
     * steps than one epoch holds) as one row.
     */
    public int[] window(long i, float[] completionRow) {
        int n = windows();
        if (n == 0) {
            throw new IllegalStateException("no documents");
        }
        int start = (int) (i % n) * (seqLen + 1);
        int[] row = new int[seqLen + 1];
        for (int j = 0; j <= seqLen; j++) {
            int k = (start + j) % ids.size(); // a stream shorter than a window repeats
            row[j] = ids.get(k);
            if (j > 0 && completionRow != null) {
                completionRow[j - 1] = completion.get(k) ? 1f : 0f;
            }
        }
        return row;
    }

    /** The batch of windows {@code first .. first + rows - 1}. */
    public TrainBatch batch(long first, int rows) {
        int[][] t = new int[rows][];
        float[][] c = new float[rows][seqLen];
        for (int r = 0; r < rows; r++) {
            t[r] = window(first + r, c[r]);
        }
        return new TrainBatch(t, null, c);
    }
}
