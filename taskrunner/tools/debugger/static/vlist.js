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

  firstVisible() {
    return Math.floor((this.container.scrollTop * this.scale()) / this.rowHeight);
  }

  scrollToEnd() {
    this.container.scrollTop = this.container.scrollHeight;
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
    requestAnimationFrame(() => { this.queued = false; this.refresh(); });
  }

  refresh() {
    const height = this.container.clientHeight || 300;
    const first = Math.max(0, this.firstVisible() - 2);
    const visible = Math.ceil(height / this.rowHeight) + 4;
    const last = Math.min(this.count, first + visible);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) {
      const row = document.createElement('div');
      row.className = 'vrow';
      row.style.height = `${this.rowHeight}px`;
      this.container.appendChild(row);
      this.pool.push(row);
    }
    const offset = this.container.scrollTop - (this.firstVisible() * this.rowHeight) / this.scale();
    const base = this.container.scrollTop - offset;
    for (let i = 0; i < this.pool.length; i += 1) {
      const row = this.pool[i];
      const index = first + i;
      if (i >= needed) {
        if (!row.hidden) row.hidden = true;
        continue;
      }
      row.hidden = false;
      const top = base + (index - this.firstVisible()) * this.rowHeight;
      row.style.transform = `translateY(${top}px)`;
      row.dataset.index = String(index);
      this.fill(row, index);
    }
  }
}

window.VList = VList;
