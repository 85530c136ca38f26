// A virtual list: only the rows in view exist in the DOM.
//
// new VList(container, rowHeight, fill) -- container is a scrolling element of fixed
// height; fill(rowElement, index) writes row `index` into a reused element (through
// textContent / createElement only).  setCount(n) and refresh() re-render the visible
// window; nothing else touches the DOM, so 2,000 tasks or 1,000,000 records cost the same
// to draw as 30.
'use strict';

class VList {
  constructor(container, rowHeight, fill) {
    this.container = container;
    this.rowHeight = rowHeight;
    this.fill = fill;
    this.count = 0;
    this.spacer = document.createElement('div');
    this.spacer.className = 'vlist-spacer';
    this.container.appendChild(this.spacer);
    this.pool = [];
    this.queued = false;
    this.maxPixels = 15000000; // browsers cap element heights; scale beyond that
    this.scrollTop = undefined;
    this.height = undefined;
    const style = getComputedStyle(container);
    this.viewHeight = parseFloat(style.maxHeight) || parseFloat(style.height) || 0;
    this.container.addEventListener('scroll', () => this.queueRefresh(), { passive: true });
  }

  setCount(count) {
    if (count === this.count) return;
    this.count = count;
    this.spacer.style.height = `${Math.min(count * this.rowHeight, this.maxPixels)}px`;
  }

  scale() {
    const full = this.count * this.rowHeight;
    return full > this.maxPixels ? full / this.maxPixels : 1;
  }

  // Layout is read once per frame, in measure(), before any list writes: a read after a
  // write forces the browser to lay the page out again.
  measure() {
    this.scrollTop = this.container.scrollTop;
    // A list that grows up to its max-height may be measured before it has grown.
    this.height = Math.max(this.container.clientHeight, this.viewHeight) || 300;
  }

  scrollToEnd() {
    const content = Math.min(this.count * this.rowHeight, this.maxPixels);
    const top = Math.max(0, content - (this.height || this.container.clientHeight || 300));
    this.scrollTop = top;
    this.container.scrollTop = top;
  }

  scrollToIndex(index) {
    this.container.scrollTop = (index * this.rowHeight) / this.scale();
  }

  atEnd() {
    const c = this.container;
    return c.scrollTop + c.clientHeight >= c.scrollHeight - this.rowHeight * 1.5;
  }

  queueRefresh() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => { this.queued = false; this.measure(); this.refresh(); });
  }

  refresh() {
    // Read the layout once, before any write: reading it after a write forces the
    // browser to lay the page out again, once per read.
    if (this.scrollTop === undefined) this.measure();
    const scrollTop = this.scrollTop;
    const height = this.height;
    const scale = this.scale();
    // Past the browser's height limit the scrollbar maps to rows by proportion.
    const content = Math.min(this.count * this.rowHeight, this.maxPixels);
    const inView = Math.ceil(height / this.rowHeight);
    const firstVisible = scale > 1
      ? Math.round((scrollTop / Math.max(1, content - height)) * Math.max(0, this.count - inView))
      : Math.floor(scrollTop / this.rowHeight);
    const first = Math.max(0, firstVisible - 2);
    const visible = Math.ceil(height / this.rowHeight) + 4;
    const last = Math.min(this.count, first + visible);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) {
      const row = document.createElement('div');
      row.className = 'vrow';
      row.style.height = `${this.rowHeight}px`;
      row.hidden = true;
      this.container.appendChild(row);
      this.pool.push(row);
    }
    // Row element for index i is pool[i % size]: scrolling (or following a growing list)
    // by k rows moves and refills k elements, not all of them.
    const size = this.pool.length;
    for (let index = first; index < last; index += 1) {
      const row = this.pool[index % size];
      const key = String(index);
      if (row.hidden) row.hidden = false;
      if (row.dataset.index !== key) row.dataset.index = key;
      // Content coordinates: index * rowHeight, or relative to the view when scaled.
      const top = scale > 1
        ? scrollTop + (index - firstVisible) * this.rowHeight
        : index * this.rowHeight;
      const transform = `translateY(${top}px)`;
      if (row.style.transform !== transform) row.style.transform = transform;
      this.fill(row, index); // writes only what differs
    }
    for (const row of this.pool) {
      const index = Number(row.dataset.index);
      if (!row.hidden && (!(index >= first && index < last) || row.dataset.index === undefined)) {
        row.hidden = true;
      }
    }
  }
}

window.VList = VList;
