package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.morastream.models.tokenizer.ByteTokenizer;
import org.junit.jupiter.api.Test;

class DocumentPackerTest {
    @Test
    void packsFramedDocumentsAndMarksCompletions() {
        DocumentPacker p = new DocumentPacker(new ByteTokenizer(), 4);
        p.add(DocumentPacker.Document.text("ab")); // BOS a b EOS
        p.add(new DocumentPacker.Document("q", "c")); // BOS q | c EOS
        assertEquals(1, p.windows()); // 8 tokens, windows of 5
        float[] comp = new float[4];
        int[] w = p.window(0, comp);
        assertArrayEquals(new int[] {256, 'a', 'b', 257, 256}, w);
        assertArrayEquals(new float[] {0, 0, 0, 0}, comp);
        float[] comp2 = new float[4];
        int[] w2 = p.window(1, comp2); // one window: wraps back to the start
        assertArrayEquals(w, w2);
    }

    @Test
    void aStreamShorterThanAWindowRepeats() {
        DocumentPacker p = new DocumentPacker(new ByteTokenizer(), 9);
        p.add(new DocumentPacker.Document("q", "c")); // BOS q c EOS
        float[] comp = new float[9];
        int[] w = p.window(0, comp);
        assertArrayEquals(new int[] {256, 'q', 'c', 257, 256, 'q', 'c', 257, 256, 'q'}, w);
        // targets: q c EOS BOS q c EOS BOS q -> completion marks on c and EOS
        assertArrayEquals(new float[] {0, 1, 1, 0, 0, 1, 1, 0, 0}, comp);
    }
}
