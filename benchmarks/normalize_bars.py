"""CPU time per tick of the core stage classes NormalizeState + BarBuilder (no Bytewax, no I/O).

    python benchmarks/normalize_bars.py

Uses process_time (not wall clock) so other processes on a shared box distort it less; best of 5.
Outputs of each 50k-tick chunk are held until the chunk is timed, so the numbers include the GC
cost of keeping that many records alive (roughly what a batching sink does).
"""
import gc
import random
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from schemas import RawTick, Trade
from market.normalize import NormalizeState
from market.bars import BarBuilder

def make_ticks(n, symbols=("AAPL","MSFT","SPY","QQQ"), quote_ratio=0.5, seed=7):
    rng = random.Random(seed); ts = 1_700_000_000_000_000_000; px = {s: 100.0 for s in symbols}; out = []
    for i in range(n):
        ts += rng.randint(100_000, 2_000_000); s = rng.choice(symbols); px[s] *= 1 + rng.gauss(0, 0.0002)
        if rng.random() < quote_ratio:
            p = {"type":"quote","ts":ts,"bid":px[s]-0.01,"ask":px[s]+0.01,"bid_size":100.0,"ask_size":200.0}
        else:
            p = {"type":"trade","ts":ts,"price":px[s],"size":float(rng.randint(1,500)),"side":rng.choice(["buy","sell","unknown"]),"trade_id":str(i)}
        out.append(RawTick.model_construct(schema_version=1,id=f"synth:{i}",ts_event=ts,ts_ingest=ts+1000,source="synth",symbol=s,payload_format="tapeflow.v1",payload=p,seq=i))
    return out

def run(ticks, reps=5):
    best_n = best_b = 9e9
    for _ in range(reps):
        norm = NormalizeState(); bars = BarBuilder()
        tn = tb = 0
        for i in range(0, len(ticks), 50_000):
            chunk = ticks[i:i+50_000]
            c0 = time.process_time_ns()
            outs = [norm.on_raw(t)[0] for t in chunk]
            c1 = time.process_time_ns()
            for rec in outs:
                if type(rec) is Trade: bars.on_trade(rec)
                else: bars.advance(rec.symbol, rec.ts_event, rec.ts_ingest)
            c2 = time.process_time_ns()
            tn += c1 - c0; tb += c2 - c1
            del outs
        best_n = min(best_n, tn / len(ticks) / 1e3); best_b = min(best_b, tb / len(ticks) / 1e3)
    return best_n, best_b

for label, ratio in (("50% trades / 50% quotes", 0.5), ("trades only", 0.0)):
    ticks = make_ticks(200_000, quote_ratio=ratio); gc.collect(); gc.freeze()
    n, b = run(ticks)
    print(f"{label:26s} normalize {n:.3f} µs/tick  bars {b:.3f} µs/tick  total {n+b:.3f} µs/tick")
    gc.unfreeze()
print("calibration: sum(range(1000)) %.1f µs (≈6-8 µs on a current desktop CPU, CPython 3.11)" % (min(timeit.repeat("sum(range(1000))", number=2000, repeat=7, timer=time.process_time))/2000*1e6))
