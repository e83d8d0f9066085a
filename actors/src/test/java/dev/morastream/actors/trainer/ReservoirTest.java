package dev.morastream.actors.trainer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.morastream.actors.evaluator.Sample;
import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.models.train.DocumentPacker;
import dev.morastream.models.train.TrainBatch;
import java.util.List;
import org.junit.jupiter.api.Test;

class ReservoirTest {
    @Test
    void replayedBaseRowsAreNotTheDomainsFacts() {
        ByteTokenizer tok = new ByteTokenizer();
        DocumentPacker p = new DocumentPacker(tok, 40);
        p.add(new DocumentPacker.Document("Q: new?\nA:", " yes"));
        p.add(new DocumentPacker.Document("Q: new?\nA:", " yes"));
        TrainBatch two = p.batch(0, 1);
        DocumentPacker q = new DocumentPacker(tok, 40);
        q.add(new DocumentPacker.Document("Q: old?\nA:", " base"));
        q.add(new DocumentPacker.Document("Q: old?\nA:", " base"));
        TrainBatch base = q.batch(0, 1);
        TrainBatch mixed = new TrainBatch(new int[][] {two.tokens()[0], base.tokens()[0]}, null,
                new float[][] {two.completionMask()[0], base.completionMask()[0]}, new boolean[] {false, true});
        Reservoir r = new Reservoir(tok, 10, 10, 0);
        r.add(mixed);
        Sample s = r.snapshot();
        assertEquals(List.of(new Sample.Fact("Q: new?\nA:", " yes"), new Sample.Fact("Q: new?\nA:", " yes")), s.facts());
        assertEquals(1, s.texts().size(), "only the domain's row is a trained text");
    }
}
