package dev.morastream.streams.replay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class ReservoirTest {
    @Test
    void staysBoundedAndKeepsEveryItemWithTheSameProbability() {
        int n = 100;
        int capacity = 10;
        int trials = 20_000;
        int[] kept = new int[n];
        for (int t = 0; t < trials; t++) {
            Reservoir<Integer> r = new Reservoir<>(capacity, t);
            for (int i = 0; i < n; i++) {
                r.offer(i);
                assertTrue(r.size() <= capacity);
            }
            assertEquals(capacity, r.size());
            assertEquals(n, r.seen());
            for (int i : r.items()) {
                kept[i]++;
            }
        }
        // each item is kept with probability capacity / n = 0.1: 2,000 of 20,000 trials, sd ~42
        double expected = (double) trials * capacity / n;
        for (int i = 0; i < n; i++) {
            assertTrue(Math.abs(kept[i] - expected) < 6 * Math.sqrt(expected), "item " + i + " kept " + kept[i] + " times");
        }
        // and early items are not favoured over late ones
        int firstHalf = 0;
        for (int i = 0; i < n / 2; i++) {
            firstHalf += kept[i];
        }
        assertEquals(0.5, firstHalf / (double) (trials * capacity), 0.01);
    }

    @Test
    void keepsEverythingBelowCapacityAndIsDeterministicForASeed() {
        Reservoir<Integer> small = new Reservoir<>(50, 1);
        for (int i = 0; i < 20; i++) {
            small.offer(i);
        }
        assertEquals(20, small.size());
        Reservoir<Integer> a = new Reservoir<>(16, 42);
        Reservoir<Integer> b = new Reservoir<>(16, 42);
        for (int i = 0; i < 1000; i++) {
            a.offer(i);
            b.offer(i);
        }
        assertEquals(a.items(), b.items());
        assertEquals(a.sample(new Random(3)), b.sample(new Random(3)));
    }
}
